#!/usr/bin/env python3
"""Quark next to native, runc and runsc, measured in the same run.

    python3 bench/run.py [--iterations N] [--batches B] [--runs K] [--spawns P]
                         [--dd-runs D] [--idle-seconds S] [--sandboxes M]
                         [--runtimes native,runc,runsc,quark]
                         [--quark-paths qcall,exit,template]
                         [--json FILE]

Prints one table with a column per runtime (quark once per syscall path, chosen with
$QUARK_SYSCALL_PATH, and once with the qcall path through a template process started
for the column, `quark template serve`): per-call latency of getpid, clock_gettime, a 4 KiB read of
/dev/zero and a 4 KiB pread of a regular file of the rootfs (bench/syscalls.c,
compiled here with `gcc -static`; median of B batches, getpid also as the mean);
the cost of a process, P forks (fork, _exit, waitpid) and P forks that exec a static
no-op program (median of B batches); busybox `dd bs=4k count=2500` to a file of the
rootfs in MB/s; the wall time and peak RSS of `run` of a bundle whose command is
`echo hello` (K runs, each a full create/start/wait/delete); `podman run --rm` of
the same (K runs: conmon calls the runtime's create, start and delete); the CPU a
sleeping container uses over S seconds; its PSS, and the marginal PSS of each extra
sleeping sandbox (1 then M running). A runtime that
is missing or fails shows "n/a" and the reason below the table. See bench/README.md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import select
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from quark.tools.bundle import bundle_config, make_rootfs  # noqa: E402
from quark.tools.podman import podman_env  # noqa: E402

RUNTIMES = ("native", "runc", "runsc", "quark")
QUARK_PATHS = ("qcall", "exit", "template")
LAUNCHER = REPO / "bin" / "quark"
NATIVE_FACTOR = 100  # native calls are ~1000x cheaper: loop longer for a stable figure
# runsc's default platform here is ptrace; --platform=kvm hangs on this PVM host.
RUNSC_FLAGS = ["--network=none"]
DATA_FILE = "bench.dat"       # in the rootfs: what pread4k reads (64 KiB)
DD_FILE = "dd.out"            # in the rootfs: what dd writes
DD_COUNT = 2500
PODMAN_IMAGE = "localhost/quark-bench-busybox:latest"
SLEEP_S = 60                  # sleeping containers are killed when measured
SETTLE_S = 2.0                # after sleepers are up, before they are sampled
CLK_TCK = os.sysconf("SC_CLK_TCK")


class Unavailable(Exception):
    """This runtime cannot be measured here; the message says why (one line)."""


def _short(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return (lines[-1] if lines else "no output")[:160]


@dataclass
class Column:
    """One column of the table: a runtime, and for quark the syscall path and
    whether runs go through a template process (quark.template)."""
    label: str
    runtime: str
    env: dict[str, str] = field(default_factory=dict)
    template: bool = False


@dataclass
class Result:
    stdout: str
    stderr: str
    status: int
    seconds: float


def run_to_end(argv: list[str], env: dict[str, str], timeout: float) -> Result:
    """Run argv to completion with stdin /dev/null and no terminal, timing it."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                env=env, start_new_session=True)
        timer = threading.Timer(timeout, lambda: _killpg(proc.pid))
        timer.start()
        try:
            _, wstatus = os.waitpid(proc.pid, 0)
        finally:
            elapsed = time.perf_counter() - start
            timed_out = not timer.is_alive()
            timer.cancel()
        proc.returncode = os.waitstatus_to_exitcode(wstatus)
        if timed_out:
            raise Unavailable(f"timed out after {timeout:.0f}s")
        out.seek(0)
        err.seek(0)
        return Result(out.read(), err.read(), proc.returncode, elapsed)


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _timed(stderr: str) -> list[dict[str, Any]]:
    """The lines `syscalls --time` printed, in order."""
    out = []
    for line in stderr.splitlines():
        if line.startswith('{"timed"'):
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _quiet(argv: list[str], env: dict[str, str] | None = None) -> None:
    subprocess.run(argv, check=False, capture_output=True, env=env, timeout=60)


# -- /proc ------------------------------------------------------------------------------

def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    """pid and its descendants, now."""
    kids = _children()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, ()))
    return out


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime (all threads) of these processes, in clock ticks."""
    total = 0
    for p in pids:
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])   # utime, stime (fields 14, 15)
    return total


def memory_kib(pids: list[int]) -> tuple[int, str]:
    """Sum of Pss (smaps_rollup) of these processes, else of VmRSS: (KiB, "PSS"|"RSS")."""
    total, kind = 0, "PSS"
    for p in pids:
        try:
            text = Path(f"/proc/{p}/smaps_rollup").read_text()
            m = re.search(r"^Pss:\s+(\d+) kB", text, re.MULTILINE)
        except OSError:
            m = None
        if m is None:
            kind = "RSS"
            try:
                text = Path(f"/proc/{p}/status").read_text()
            except OSError:
                continue
            m = re.search(r"^VmRSS:\s+(\d+) kB", text, re.MULTILINE)
        total += int(m.group(1)) if m else 0
    return total, kind


# -- the bench ------------------------------------------------------------------------

class Bench:
    def __init__(self, workdir: Path, ns: argparse.Namespace) -> None:
        self.dir = workdir
        self.ns = ns
        self.rootfs = workdir / "rootfs"
        self.seq = 0
        self._podman_env: dict[str, str] | None = None
        self._podman_error = ""
        src = REPO / "bench" / "syscalls.c"
        self.prog = workdir / "syscalls"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(self.prog), str(src)], check=True)
        make_rootfs(self.rootfs, extra_binaries=[self.prog])
        (self.rootfs / DATA_FILE).write_bytes(os.urandom(64 << 10))

    def bundle(self, name: str, args: list[str]) -> Path:
        """A bundle dir whose config.json runs `args` on the shared rootfs."""
        bundle = self.dir / name
        bundle.mkdir(exist_ok=True)
        config = bundle_config(args)
        config["root"]["path"] = str(self.rootfs)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def env(self, col: Column) -> dict[str, str]:
        # bin/quark (the installed `quark`) runs this checkout with this Python.
        template = str(self.template_socket) if col.template else "off"
        return dict(os.environ, PYTHONPATH=str(REPO), QUARK_PYTHON=sys.executable,
                    QUARK_TEMPLATE=template, **col.env)

    @property
    def template_socket(self) -> Path:
        return self.dir / "template.sock"

    def start_template(self, col: Column) -> subprocess.Popen[bytes]:
        """`quark template serve` for a template column, listening once this returns."""
        proc = subprocess.Popen([str(LAUNCHER), "--log", str(self.dir / "template.log"),
                                 "template", "serve"], env=self.env(col),
                                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while not self.template_socket.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                _killpg(proc.pid)
                proc.wait()
                raise Unavailable(f"the template did not start (exit {proc.returncode})")
            time.sleep(0.05)
        return proc

    def template_status(self, col: Column) -> dict[str, Any]:
        out = subprocess.run([str(LAUNCHER), "template", "status"], env=self.env(col),
                             capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            raise Unavailable(f"template status: {_short(out.stderr)}")
        return dict(json.loads(out.stdout))

    def served_pids(self, col: Column) -> list[int]:
        """A template column: the template and its runs (their processes are not in
        the caller's tree). Counted with each sandbox's tree: the template is a
        resident cost, and cancels out of the marginal figure."""
        if not col.template:
            return []
        st = self.template_status(col)
        return [int(st["pid"]), *(int(p) for p in st["runs"])]

    def argv(self, col: Column, args: list[str]) -> tuple[list[str], Callable[[], None]]:
        """The command running `args` (in the rootfs) under col's runtime, and a
        cleanup (kill and delete the container) for after it."""
        if col.runtime == "native":
            return [str(self.rootfs / args[0].lstrip("/")), *args[1:]], lambda: None
        bundle = self.bundle(f"b-{Path(args[0]).name}-{len(args)}", args)
        self.seq += 1
        cid = f"bench-{os.getpid()}-{self.seq}"
        env = self.env(col)
        if col.runtime == "runc":
            return (["runc", "run", "--bundle", str(bundle), cid],
                    lambda: _quiet(["runc", "delete", "--force", cid]))
        if col.runtime == "runsc":
            flags = RUNSC_FLAGS
            return (["runsc", *flags, "run", "--bundle", str(bundle), cid],
                    lambda: _quiet(["runsc", *flags, "delete", "--force", cid]))
        if col.runtime == "quark":
            quark = [str(LAUNCHER)]
            return ([*quark, "run", "--bundle", str(bundle), cid],
                    lambda: _quiet([*quark, "delete", "--force", cid], env))
        raise ValueError(col.runtime)

    def run(self, col: Column, args: list[str]) -> Result:
        """Run `args` (a path inside the rootfs) under col's runtime to completion."""
        argv, cleanup = self.argv(col, args)
        try:
            res = run_to_end(argv, self.env(col), self.ns.timeout)
        finally:
            cleanup()
        if res.status != 0:
            raise Unavailable(f"exit {res.status}: {_short(res.stderr or res.stdout)}")
        return res

    # -- the measurements: each returns a dict of figures or raises Unavailable

    def syscalls(self, col: Column) -> dict[str, float]:
        n = self.ns.iterations * (NATIVE_FACTOR if col.runtime == "native" else 1)
        data = str(self.rootfs / DATA_FILE) if col.runtime == "native" else "/" + DATA_FILE
        return self._figures(col, [str(n), str(self.ns.batches), data])

    def spawns(self, col: Column) -> dict[str, float]:
        """`syscalls --spawn`: fork+_exit+waitpid, and fork+exec of a static no-op
        program+waitpid, --spawns times each in B batches (median batch)."""
        n = max(self.ns.spawns, self.ns.batches)
        return self._figures(col, ["--spawn", str(n), str(self.ns.batches)])

    def _figures(self, col: Column, args: list[str]) -> dict[str, float]:
        """Run /bin/syscalls ``args`` under col's runtime: the JSON it prints last."""
        res = self.run(col, ["/bin/syscalls", *args])
        try:
            return dict(json.loads(res.stdout.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            raise Unavailable(f"unexpected output: {_short(res.stdout)}") from None

    def dd(self, col: Column) -> dict[str, Any]:
        """busybox dd (which reports no rate here), D times in one container (one
        sh), each timed inside the container by `syscalls --time`: fork + exec + copy
        + exit of dd. MB/s = 10^6 B/s. The file is removed after each copy; a dd with
        count=0 (its start-up cost only) is timed too, for the JSON."""
        dst = str(self.rootfs / DD_FILE) if col.runtime == "native" else "/" + DD_FILE
        timer = str(self.rootfs / "bin/syscalls") if col.runtime == "native" else "/bin/syscalls"
        dd = f"{timer} --time dd if=/dev/zero of={dst} bs=4k"
        script = " && ".join([f"{dd} count=0", *[f"{dd} count={DD_COUNT} && rm {dst}"]
                                                  * self.ns.dd_runs])
        res = self.run(col, ["/bin/sh", "-c", script])
        walls = [t["wall_ns"] / 1e9 for t in _timed(res.stderr)]
        if len(walls) != self.ns.dd_runs + 1:
            raise Unavailable(f"dd timing not understood: {_short(res.stderr)}")
        return {"mb_s": [DD_COUNT * 4096 / s / 1e6 for s in walls[1:]],
                "seconds": walls[1:], "count0_seconds": walls[0]}

    def echo(self, col: Column) -> dict[str, Any]:
        """`run` of echo hello, K times, each under `syscalls --time` on the host: the
        wall time and the peak RSS (ru_maxrss: the largest single process of the
        runtime's tree that was reaped in it). A failed run is counted and reported,
        and the others still give the figures."""
        times: list[float] = []
        rss: list[int] = []
        failures: list[str] = []
        for _ in range(self.ns.runs):
            argv, cleanup = self.argv(col, ["/bin/echo", "hello"])
            try:
                res = run_to_end([str(self.prog), "--time", *argv], self.env(col),
                                 self.ns.timeout)
                if res.status != 0:
                    raise Unavailable(f"exit {res.status}: {_short(res.stderr or res.stdout)}")
                if res.stdout != "hello\n":
                    raise Unavailable(f"echo printed {res.stdout!r}")
                timed = _timed(res.stderr)
                if not timed:
                    raise Unavailable(f"no timing: {_short(res.stderr)}")
            except Unavailable as e:
                failures.append(str(e))
                if len(failures) >= 3 and not times:
                    break
                continue
            finally:
                cleanup()
            times.append(timed[-1]["wall_ns"] / 1e9)
            rss.append(timed[-1]["maxrss_kib"])
        if not times:
            raise Unavailable(failures[-1])
        out: dict[str, Any] = {"seconds": times, "maxrss_kib": rss}
        if col.template:
            # The sandbox is the template's child, not in the caller's tree: its
            # peak RSS (pages shared with the template included) is the template's
            # record of its last runs.
            served = self.template_status(col)["recent_run_rss_kib"][-len(rss):]
            out["client_maxrss_kib"] = rss
            out["maxrss_kib"] = [max(a, b) for a, b in zip(rss, served)]
        if failures:
            out["failures"] = failures
        return out

    def echo_nonet(self, col: Column) -> dict[str, Any]:
        """echo again with quark's third-party plugins off (QUARK_PLUGINS=none): the
        container's new network namespace stays empty, as runc and runsc
        (--network=none) leave it; with net_bridge installed, `echo` above also gets
        a veth on the bridge, an address, a route and the masquerade check."""
        return self.echo(Column(col.label, col.runtime, {**col.env, "QUARK_PLUGINS": "none"},
                                col.template))

    def podman(self, col: Column) -> dict[str, Any]:
        """`podman run --rm --network=none` of echo, K times (after one not counted):
        what a podman user waits for, conmon and the runtime's create, start and
        delete included. podman's configuration and vfs storage are the bench's own
        (quark.tools.podman). quark's create does not go through a
        template: a template column measures the same as qcall here."""
        if col.runtime == "native":
            raise Unavailable("no OCI runtime")
        if shutil.which("podman") is None:
            raise Unavailable("podman not installed")
        penv = self._podman_setup()
        base = ["podman", "--cgroup-manager=cgroupfs"]
        if col.runtime == "runc":
            base += ["--runtime", str(shutil.which("runc"))]
        elif col.runtime == "runsc":
            base += ["--runtime", str(shutil.which("runsc")),
                     *(f"--runtime-flag={f.lstrip('-')}" for f in RUNSC_FLAGS)]
        else:
            # conmon does not pass podman's environment on: a script sets what
            # self.env() sets for the other rows.
            # (Named quark: podman knows a runtime by its file's name.)
            shim = self.dir / "podman" / col.label.replace(" ", "-") / "quark"
            shim.parent.mkdir(exist_ok=True)
            ours = {k: v for k, v in self.env(col).items() if os.environ.get(k) != v}
            shim.write_text("#!/bin/sh\n" + "".join(
                f"export {k}={shlex.quote(v)}\n" for k, v in ours.items())
                + f'exec {shlex.quote(str(LAUNCHER))} "$@"\n')
            shim.chmod(0o755)
            base += ["--runtime", str(shim)]
        argv = [*base, "run", "--rm", "--network=none", PODMAN_IMAGE, "/bin/echo", "hello"]
        times: list[float] = []
        for i in range(self.ns.runs + 1):
            t0 = time.monotonic()
            try:
                p = subprocess.run(argv, env=penv, capture_output=True,
                                   text=True, timeout=self.ns.timeout)
            except subprocess.TimeoutExpired:
                raise Unavailable(f"podman run took over {self.ns.timeout:g} s") from None
            if p.returncode != 0 or p.stdout != "hello\n":
                raise Unavailable(f"podman run: exit {p.returncode}: "
                                  f"{_short(p.stderr or p.stdout)}")
            if i:
                times.append(time.monotonic() - t0)
        return {"seconds": times}

    def _podman_setup(self) -> dict[str, str]:
        """podman's configuration and storage in the work dir (quark.tools.podman),
        and the rootfs imported as PODMAN_IMAGE (at the first call): the environment
        podman runs with."""
        if self._podman_env is not None:
            return self._podman_env
        if self._podman_error:
            raise Unavailable(self._podman_error)
        d = self.dir / "podman"
        d.mkdir()
        env = dict(os.environ, **podman_env(d))
        tar = d / "rootfs.tar"
        subprocess.run(["tar", "-C", str(self.rootfs), "-cf", str(tar), "."], check=True)
        p = subprocess.run(["podman", "import", str(tar), PODMAN_IMAGE], env=env,
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            self._podman_error = f"podman import: {_short(p.stderr)}"
            raise Unavailable(self._podman_error)
        self._podman_env = env
        return env

    def sleepers(self, col: Column) -> dict[str, Any]:
        """Idle CPU of one sleeping container over S s, its memory, then the marginal
        memory of M-1 more (all foreground `run`s, each a process tree of its own)."""
        running: list[tuple[subprocess.Popen[bytes], Callable[[], None]]] = []
        try:
            running.append(self._sleeper(col))
            time.sleep(SETTLE_S)
            pids = list(dict.fromkeys(tree(running[0][0].pid) +
                                      [q for p in self.served_pids(col) for q in tree(p)]))
            ticks0, t0 = cpu_ticks(pids), time.monotonic()
            time.sleep(self.ns.idle_seconds)
            ticks1, t1 = cpu_ticks(pids), time.monotonic()
            self._alive(running)
            mem1, kind = memory_kib(pids)
            procs = [_comm(p) for p in pids]
            while len(running) < self.ns.sandboxes:
                running.append(self._sleeper(col))
            time.sleep(SETTLE_S)
            self._alive(running)
            served = list(dict.fromkeys(q for p in self.served_pids(col) for q in tree(p)))
            memn = sum(memory_kib(tree(p.pid))[0] for p, _ in running) + \
                memory_kib(served)[0]
        finally:
            for proc, cleanup in running:
                cleanup()
                _killpg(proc.pid)
                proc.wait()
        cpu = (ticks1 - ticks0) / CLK_TCK / (t1 - t0) * 100
        return {"idle_cpu_pct": cpu, "idle_seconds": t1 - t0, "processes": procs,
                "mem_kind": kind, "mem1_kib": mem1, f"mem{self.ns.sandboxes}_kib": memn,
                "marginal_kib": (memn - mem1) / max(self.ns.sandboxes - 1, 1)}

    def _sleeper(self, col: Column) -> tuple[subprocess.Popen[bytes], Callable[[], None]]:
        """Start a sleeping container under col's runtime in the background (a
        foreground `run`, so for quark the sandbox is this process); return once its
        shell said "up" and exec'd `sleep`."""
        argv, cleanup = self.argv(col, ["/bin/sh", "-c", f"echo up && exec sleep {SLEEP_S}"])
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env(col),
                                start_new_session=True)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            line = proc.stdout.readline() if ready else b""
            if line != b"up\n":
                if proc.poll() is None and not ready:
                    raise Unavailable("sleeping container did not start in 60 s")
                _killpg(proc.pid)
                proc.wait()
                raise Unavailable(f"sleeping container exited {proc.returncode}: "
                                  f"{_short(proc.stderr.read().decode(errors='replace'))}")
        except BaseException:
            cleanup()
            _killpg(proc.pid)
            proc.wait()
            raise
        return proc, cleanup

    @staticmethod
    def _alive(running: list[tuple[subprocess.Popen[bytes], Callable[[], None]]]) -> None:
        for proc, _ in running:
            if proc.poll() is not None:
                raise Unavailable(f"a sleeping container exited ({proc.returncode}) early")


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def precheck(runtime: str) -> None:
    if runtime == "native":
        return
    if runtime in ("runc", "runsc"):
        if shutil.which(runtime) is None:
            raise Unavailable(f"{runtime} not installed")
        if os.geteuid() != 0:
            raise Unavailable("needs root")
    if runtime == "quark" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise Unavailable("/dev/kvm missing or not read-write")


MEASUREMENTS = ("syscalls", "spawns", "dd", "echo", "echo_nonet", "podman", "sleepers")


def measure(bench: Bench, columns: list[Column]) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for col in columns:
        res: dict[str, Any] = {"runtime": col.runtime, "env": col.env}
        results[col.label] = res
        try:
            precheck(col.runtime)
        except Unavailable as e:
            res["error"] = str(e)
            continue
        template = None
        try:
            if col.template:
                template = bench.start_template(col)
            for key in MEASUREMENTS:
                print(f"measuring {col.label}: {key} ...", file=sys.stderr, flush=True)
                try:
                    res[key] = getattr(bench, key)(col)
                except Unavailable as e:
                    res[f"{key}_error"] = str(e)
            if template is not None:
                res["template"] = bench.template_status(col)
        except Unavailable as e:
            res["error"] = str(e)
        finally:
            if template is not None:
                template.send_signal(signal.SIGTERM)
                try:
                    template.wait(30)
                except subprocess.TimeoutExpired:
                    _killpg(template.pid)
                    template.wait()
    return results


# -- the table ------------------------------------------------------------------------

def _us(field: str, places: int = 3) -> Callable[[dict[str, Any]], str]:
    return lambda d: f"{d[field] / 1000:.{places}f}" if field in d else "-"


def _mib(kib: float) -> str:
    return f"{kib / 1024:.1f}"


def rows(ns: argparse.Namespace) -> list[tuple[str, str, Callable[[dict[str, Any]], str]]]:
    b, m = ns.batches, ns.sandboxes
    return [
        (f"getpid (µs/call, median of {b} batches)", "syscalls", _us("getpid_med_ns")),
        ("getpid (µs/call, mean)", "syscalls", _us("getpid_ns")),
        ("clock_gettime (µs/call, median)", "syscalls", _us("clock_gettime_med_ns")),
        ("read 4 KiB /dev/zero (µs/call, median)", "syscalls", _us("read4k_med_ns")),
        ("pread 4 KiB rootfs file (µs/call, median)", "syscalls", _us("pread4k_med_ns")),
        (f"fork+exit+wait (µs/process, median of {b} batches)", "spawns",
         _us("fork_med_ns", 1)),
        ("fork+exec+exit+wait, static (µs/process, median)", "spawns", _us("spawn_med_ns", 1)),
        (f"dd bs=4k count={DD_COUNT} (MB/s, median of {ns.dd_runs})", "dd",
         lambda d: f"{statistics.median(d['mb_s']):.0f}"),
        (f"run busybox echo (ms, median of {ns.runs})", "echo",
         lambda d: f"{statistics.median(d['seconds']) * 1000:.1f}"),
        (f"run busybox echo peak RSS (MiB, max of {ns.runs})", "echo",
         lambda d: _mib(max(d["maxrss_kib"]))),
        (f"run echo, netns left empty (ms, median of {ns.runs})", "echo_nonet",
         lambda d: f"{statistics.median(d['seconds']) * 1000:.1f}"),
        (f"podman run --rm echo (ms, median of {ns.runs})", "podman",
         lambda d: f"{statistics.median(d['seconds']) * 1000:.1f}"),
        (f"idle sleeping container (% of a CPU, {ns.idle_seconds:g} s)", "sleepers",
         lambda d: f"{d['idle_cpu_pct']:.2f}"),
        ("sleeping container PSS (MiB, 1 running)", "sleepers",
         lambda d: _mib(d["mem1_kib"]) + ("" if d["mem_kind"] == "PSS" else " RSS")),
        (f"marginal PSS per extra sandbox (MiB, 1->{m})", "sleepers",
         lambda d: _mib(d["marginal_kib"]) + ("" if d["mem_kind"] == "PSS" else " RSS")),
    ]


def render(results: dict[str, Any], ns: argparse.Namespace) -> str:
    labels = list(results)
    notes: list[str] = []

    def note(text: str) -> str:
        if text not in notes:
            notes.append(text)
        return f"({notes.index(text) + 1})"

    def na(label: str, key: str) -> str:
        reason = results[label].get("error") or results[label].get(f"{key}_error",
                                                                    "not measured")
        return "n/a " + note(f"{label}: {reason}")

    head = ["", *labels]
    table = [head]
    for text, key, fmt in rows(ns):
        row = [text]
        for label in labels:
            data = results[label].get(key)
            cell = fmt(data) if data else na(label, key)
            if data and data.get("failures"):
                fails = data["failures"]
                cell += " " + note(f"{label}: {len(fails)} of {len(fails) + len(data['seconds'])}"
                                   f" runs failed, not counted ({fails[0]})")
            row.append(cell)
        table.append(row)

    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"({i}) {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def _version(argv: list[str]) -> str:
    try:
        out = subprocess.run(argv, check=False, capture_output=True, text=True,
                             timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "-"
    return out.splitlines()[0].strip() if out.strip() else "-"


def loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "-"


def header(ns: argparse.Namespace, load: tuple[str, str]) -> str:
    cpu = "-"
    try:
        m = re.search(r"^model name\s*:\s*(.*)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        cpu = m.group(1) if m else "-"
    except OSError:
        pass
    commit = _version(["git", "-C", str(REPO), "log", "-1", "--format=%h %cs"])
    if _version(["git", "-C", str(REPO), "status", "--porcelain", "--", "quark"]) != "-":
        commit += " + uncommitted changes in quark/"
    return "\n".join([
        f"command: {shlex.join(['python3', 'bench/run.py', *sys.argv[1:]])}",
        f"date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        (f"machine: nproc {os.cpu_count()}, kernel {os.uname().release}, cpu {cpu}; "
         f"load average {load[0]} at the start, {load[1]} at the end"),
        (f"runc: {_version(['runc', '--version'])}; runsc: {_version(['runsc', '--version'])}"
         f" ({' '.join(RUNSC_FLAGS)}); quark: {commit}; python {sys.version.split()[0]}"),
        (f"iterations: {ns.iterations} per op in sandboxes "
         f"({ns.iterations * NATIVE_FACTOR} native), {ns.batches} batches"),
    ])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", "-n", type=int, default=20000,
                   help=f"calls per operation in a sandbox (native: x{NATIVE_FACTOR})")
    p.add_argument("--batches", "-b", type=int, default=10,
                   help="batches the calls are split in (the median is reported)")
    p.add_argument("--runs", "-r", type=int, default=10, help="runs of busybox echo")
    p.add_argument("--spawns", type=int, default=400,
                   help="processes forked (and forked and exec'd) per sandbox")
    p.add_argument("--dd-runs", type=int, default=3, help="runs of dd (in one container)")
    p.add_argument("--idle-seconds", type=float, default=10.0,
                   help="how long the sleeping container's CPU use is sampled")
    p.add_argument("--sandboxes", type=int, default=4,
                   help="sleeping sandboxes for the marginal memory (1 -> this many)")
    p.add_argument("--runtimes", default=",".join(RUNTIMES),
                   help="comma-separated subset of " + ",".join(RUNTIMES))
    p.add_argument("--quark-paths", default=",".join(QUARK_PATHS),
                   help="quark columns: QUARK_SYSCALL_PATH values, or template (qcall "
                        "through a template process), comma-separated "
                        "(default qcall,exit,template)")
    p.add_argument("--timeout", type=float, default=60.0,
                   help="seconds one container run may take before it is killed")
    p.add_argument("--json", metavar="FILE", help="also write the raw results here")
    ns = p.parse_args()
    runtimes = [r for r in ns.runtimes.split(",") if r]
    if bad := set(runtimes) - set(RUNTIMES):
        p.error(f"unknown runtimes: {', '.join(sorted(bad))}")
    paths = [x for x in ns.quark_paths.split(",") if x]
    if not paths or set(paths) - set(QUARK_PATHS):
        p.error(f"--quark-paths: choose from {', '.join(QUARK_PATHS)}")
    if not 1 <= ns.batches <= 1000 or ns.iterations < ns.batches:
        p.error("need 1 <= --batches <= 1000 and --iterations >= --batches")
    if ns.runs < 1 or ns.dd_runs < 1 or ns.sandboxes < 2 or ns.idle_seconds <= 0:
        p.error("--runs and --dd-runs must be >= 1, --sandboxes >= 2, --idle-seconds > 0")
    if shutil.which("gcc") is None:
        print("bench: gcc is needed (scripts/setup-debian.sh installs it)", file=sys.stderr)
        return 1
    columns = []
    for rt in runtimes:
        if rt == "quark":
            columns += [Column("quark template", rt, {"QUARK_SYSCALL_PATH": "qcall"}, True)
                        if x == "template" else
                        Column(f"quark {x}", rt, {"QUARK_SYSCALL_PATH": x}) for x in paths]
        else:
            columns.append(Column(rt, rt))
    if "quark" in runtimes:
        # As a pip install does: else a module whose .pyc is stale (edited since)
        # is compiled again by every run when PYTHONDONTWRITEBYTECODE is set. Level 2
        # too: bin/quark runs python -OO.
        subprocess.run([sys.executable, "-m", "compileall", "-q", "-o", "0", "-o", "2",
                        str(REPO / "quark")], stdout=subprocess.DEVNULL, check=False)
    started, load0 = time.monotonic(), loadavg()
    with tempfile.TemporaryDirectory(prefix="quark-bench-") as tmp:
        results = measure(Bench(Path(tmp), ns), columns)
    print(header(ns, (load0, loadavg())))
    print(render(results, ns))
    print(f"(bench took {time.monotonic() - started:.0f} s)")
    if ns.json:
        Path(ns.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
