#!/usr/bin/env python3
"""Quark next to native, runc and runsc, measured in the same run.

    python3 bench/run.py [--iterations N] [--runs K] [--runtimes native,runc,runsc,quark]
                         [--json FILE]

Prints one table: per-call latency of getpid, clock_gettime and a 4 KiB read of
/dev/zero (bench/syscalls.c, compiled here with `gcc -static`), and the wall time of
`run` of a busybox bundle whose command is `echo hello` (median of K runs, each a
full create/start/wait/delete). A runtime that is missing or fails shows
"n/a" and the reason below the table. See bench/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from quark.tools.bundle import bundle_config, make_rootfs  # noqa: E402

RUNTIMES = ("native", "runc", "runsc", "quark")
NATIVE_FACTOR = 100  # native calls are ~1000x cheaper: loop longer for a stable figure
TIMEOUT = 300
# runsc's default platform here is ptrace; --platform=kvm hangs on this PVM host.
RUNSC_FLAGS = ["--network=none"]


class Unavailable(Exception):
    """This runtime cannot be measured here; the message says why (one line)."""


def _short(text: str) -> str:
    lines = [x for x in text.strip().splitlines() if x.strip()]
    return (lines[-1] if lines else "no output")[:160]


class Bench:
    def __init__(self, workdir: Path, iterations: int) -> None:
        self.dir = workdir
        self.iterations = iterations
        self.rootfs = workdir / "rootfs"
        self.seq = 0
        src = REPO / "bench" / "syscalls.c"
        self.prog = workdir / "syscalls"
        subprocess.run(["gcc", "-static", "-O2", "-o", str(self.prog), str(src)], check=True)
        make_rootfs(self.rootfs, extra_binaries=[self.prog])

    def bundle(self, name: str, args: list[str]) -> Path:
        """A bundle dir whose config.json runs `args` on the shared rootfs."""
        bundle = self.dir / name
        bundle.mkdir(exist_ok=True)
        config = bundle_config(args)
        config["root"]["path"] = str(self.rootfs)
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        return bundle

    def argv(self, runtime: str, bundle: Path) -> tuple[list[str], Callable[[], None]]:
        """The command running `bundle` under `runtime`, and a cleanup for after it."""
        self.seq += 1
        cid = f"bench-{os.getpid()}-{self.seq}"
        if runtime == "runc":
            return (["runc", "run", "--bundle", str(bundle), cid],
                    lambda: _quiet(["runc", "delete", "--force", cid]))
        if runtime == "runsc":
            flags = RUNSC_FLAGS
            return (["runsc", *flags, "run", "--bundle", str(bundle), cid],
                    lambda: _quiet(["runsc", *flags, "delete", "--force", cid]))
        if runtime == "quark":
            return ([sys.executable, "-m", "quark.cli", "run", "--bundle", str(bundle), cid],
                    lambda: None)
        raise ValueError(runtime)

    def run(self, runtime: str, args: list[str]) -> tuple[str, float]:
        """Run `args` (a path inside the rootfs) under `runtime`: (stdout, seconds)."""
        if runtime == "native":
            argv = [str(self.rootfs / args[0].lstrip("/")), *args[1:]]
            cleanup: Callable[[], None] = lambda: None  # noqa: E731
        else:
            argv, cleanup = self.argv(runtime, self.bundle(f"b-{Path(args[0]).name}", args))
        env = dict(os.environ, PYTHONPATH=str(REPO))
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT,
                                  env=env, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise Unavailable(f"timed out after {TIMEOUT}s") from None
        finally:
            elapsed = time.perf_counter() - start
            cleanup()
        if proc.returncode != 0:
            raise Unavailable(f"exit {proc.returncode}: {_short(proc.stderr or proc.stdout)}")
        return proc.stdout, elapsed

    def syscalls(self, runtime: str) -> dict[str, float]:
        n = self.iterations * (NATIVE_FACTOR if runtime == "native" else 1)
        out, _ = self.run(runtime, ["/bin/syscalls", str(n)])
        try:
            return dict(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            raise Unavailable(f"unexpected output: {_short(out)}") from None

    def echo(self, runtime: str, runs: int) -> list[float]:
        times = []
        for _ in range(runs):
            out, elapsed = self.run(runtime, ["/bin/echo", "hello"])
            if out != "hello\n":
                raise Unavailable(f"echo printed {out!r}")
            times.append(elapsed)
        return times


def _quiet(argv: list[str]) -> None:
    subprocess.run(argv, capture_output=True)


def precheck(runtime: str) -> None:
    if runtime == "native":
        return
    if runtime in ("runc", "runsc"):
        if shutil.which(runtime) is None:
            raise Unavailable(f"{runtime} not installed")
        if os.geteuid() != 0:
            raise Unavailable("needs root")
    if runtime == "quark":
        if not os.access("/dev/kvm", os.R_OK | os.W_OK):
            raise Unavailable("/dev/kvm missing or not read-write")


def measure(bench: Bench, runtimes: list[str], runs: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for rt in runtimes:
        res: dict[str, Any] = {}
        try:
            precheck(rt)
        except Unavailable as e:
            results[rt] = {"error": str(e)}
            continue
        print(f"measuring {rt} ...", file=sys.stderr, flush=True)
        for key, fn, extra in (("syscalls", bench.syscalls, ()),
                               ("echo_s", bench.echo, (runs,))):
            try:
                res[key] = fn(rt, *extra)  # type: ignore[operator]
            except Unavailable as e:
                res[f"{key}_error"] = str(e)
        results[rt] = res
    return results


ROWS = (
    ("getpid", "syscalls", "getpid_ns"),
    ("clock_gettime", "syscalls", "clock_gettime_ns"),
    ("read 4 KiB /dev/zero", "syscalls", "read4k_ns"),
)


def render(results: dict[str, Any], runs: int) -> str:
    runtimes = list(results)
    notes: list[str] = []

    def na(rt: str, key: str) -> str:
        reason = results[rt].get("error") or results[rt].get(f"{key}_error", "not measured")
        note = f"{rt}: {reason}"
        if note not in notes:
            notes.append(note)
        return f"n/a ({notes.index(note) + 1})"

    head = ["", *runtimes]
    rows = [head]
    for label, key, field in ROWS:
        row = [f"{label} (µs/call)"]
        for rt in runtimes:
            data = results[rt].get(key)
            row.append(f"{data[field] / 1000:.3f}" if data else na(rt, key))
        rows.append(row)
    row = [f"run busybox echo (ms, median of {runs})"]
    for rt in runtimes:
        times = results[rt].get("echo_s")
        row.append(f"{statistics.median(times) * 1000:.1f}" if times else na(rt, "echo_s"))
    rows.append(row)

    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                       enumerate(zip(r, widths, strict=True))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [f"({i}) {n}" for i, n in enumerate(notes, 1)]
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", "-n", type=int, default=20000,
                   help=f"calls per operation in a sandbox (native: x{NATIVE_FACTOR})")
    p.add_argument("--runs", "-r", type=int, default=10, help="runs of busybox echo")
    p.add_argument("--runtimes", default=",".join(RUNTIMES),
                   help="comma-separated subset of " + ",".join(RUNTIMES))
    p.add_argument("--json", metavar="FILE", help="also write the raw results here")
    ns = p.parse_args()
    runtimes = [r for r in ns.runtimes.split(",") if r]
    if bad := set(runtimes) - set(RUNTIMES):
        p.error(f"unknown runtimes: {', '.join(sorted(bad))}")
    if shutil.which("gcc") is None:
        print("bench: gcc is needed (scripts/setup-debian.sh installs it)", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory(prefix="quark-bench-") as tmp:
        results = measure(Bench(Path(tmp), ns.iterations), runtimes, ns.runs)
    print(f"iterations: {ns.iterations} per op in sandboxes, "
          f"{ns.iterations * NATIVE_FACTOR} native; runsc flags: {' '.join(RUNSC_FLAGS)}")
    print(render(results, ns.runs))
    if ns.json:
        Path(ns.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
