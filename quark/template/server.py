"""`quark template serve`: import once, fork a run per request (ahead of it: the
next run waits forked, with an empty network namespace and the VM it will most
likely ask for made meanwhile; see Template._fork and _spare_child).

One thread, one poll loop (fork from a threaded process would copy locks held by
threads that do not exist in the child). Per run the template holds the connection
(to learn that the caller died: its run is then killed, as the caller's own sandbox
would have died with it) and a pidfd (to reap the run and report a death the run
could not report itself).

A request is served only if its caller could have run the command itself with the
same result: same user, groups, capabilities, no_new_privs, seccomp mode, LSM label,
root directory and namespaces as the template. Anything else is refused and the
caller runs the command in its own process; so is everything after the code of quark
or of a plugin changed on disk (the template would run the old code).
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import client as wire

log = logging.getLogger("quark.template")

SO_PEERPIDFD = getattr(socket, "SO_PEERPIDFD", 77)      # Linux 6.5
_STATUS_FIELDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd",
                  "CapAmb", "NoNewPrivs", "Seccomp", "Seccomp_filters")
_NAMESPACES = ("user", "mnt", "net", "pid", "ipc", "uts", "cgroup", "time")

RECENT = 100            # runs whose peak RSS `status` reports

# What a foreground run imports (found by diffing sys.modules of a served run).
PRELOAD = (
    "quark.cli", "quark.config", "quark.log", "quark.oci.lifecycle", "quark.oci.spec",
    "quark.oci.state", "quark.oci.hooks", "quark.oci.cgroups", "quark.oci.console",
    "quark.sandbox.service", "quark.sandbox.process", "quark.sandbox.netns",
    "quark.sandbox.control", "quark.core.vm", "quark.core.vcpu", "quark.core.qcall",
    "quark.kernel.kernel", "quark.kernel.taskrun", "quark.kernel.vfs.mount",
    "quark.kernel.vfs.fscontext", "quark.kernel.fs.host.fs", "quark.kernel.fs.tmpfs.fs",
    "quark.kernel.fs.tmpfs.synthetic", "quark.kernel.fs.dev.devfs",
    "quark.kernel.fs.proc.fs", "quark.kernel.fs.proc.info", "quark.kernel.fs.proc.text",
    "quark.kernel.loader.vdso", "quark.kernel.procinfo", "quark.kernel.timekeeper",
    "quark.core.guest.build",
    "structlog", "uvloop", "asyncio", "subprocess",
)


def preload() -> None:
    """Import what runs use, and let plugins import theirs (quark_preload)."""
    from quark.config import config_path
    # The TOML parser only where there is a file to parse (~0.15 MiB a run would
    # carry for nothing); a file created later costs each run the import (~2 ms).
    toml = ("tomllib",) if config_path().exists() else ()
    for name in PRELOAD + toml:
        try:
            importlib.import_module(name)
        except ImportError as e:    # tomllib before 3.11; anything else shows in a run
            log.debug("template: not preloaded: %s: %s", name, e)
    from quark.kernel.syscalls import table
    table.load()
    from quark.core import kvm_ffi
    try:
        fd = kvm_ffi.open_kvm()
    except OSError:
        pass                    # no /dev/kvm: each run says so
    else:
        kvm_ffi.supported_cpuid(fd)
        os.close(fd)
    from quark.plugins import manager
    manager.preload()
    from quark import cli
    cli.build_parser("run")
    from quark.kernel.loader.vdso import vdso_image
    vdso_image()
    from quark.core.vm import load_stub
    load_stub()


def _code_files() -> dict[str, int]:
    """The source and bytecode files of every loaded quark and plugin module, with
    their mtimes: a run of a template whose code changed on disk would mix versions."""
    out = {}
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if not path or not (name.startswith("quark") or "quark" in path.rsplit("/", 3)[-3:-1]
                            or name.split(".")[0].startswith("quark_")):
            continue
        try:
            out[path] = os.stat(path).st_mtime_ns
        except OSError:
            pass
    return out


class _Watch:
    """inotify on the directories of the loaded modules. Stat-ing each of them per
    request (~150 here) cost ~1.7 ms of every run's start; a read of this fd
    (EAGAIN while nothing changed) costs microseconds."""

    # IN_MODIFY, IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_CREATE,
    # IN_DELETE, IN_DELETE_SELF, IN_MOVE_SELF
    MASK = 0x2 | 0x4 | 0x8 | 0x40 | 0x80 | 0x100 | 0x200 | 0x400 | 0x800
    _EVENT = struct.Struct("iIII")

    def __init__(self, fd: int, names: dict[int, set[str]]) -> None:
        self.fd, self.names = fd, names

    @classmethod
    def of(cls, files: dict[str, int]) -> _Watch | None:
        """None where inotify is not available (or out of watches): then every
        request stats the files."""
        from . import inotify_ffi

        try:
            fd = inotify_ffi.init()
        except (OSError, AttributeError):
            return None
        names: dict[int, set[str]] = {}
        for path in files:
            d, name = os.path.split(path)
            try:
                wd = inotify_ffi.add_watch(fd, d, cls.MASK)
            except OSError:
                os.close(fd)
                return None
            names.setdefault(wd, set()).add(name)
        return cls(fd, names)

    def changed(self) -> str | None:
        """A description of the first change to a watched file, or None."""
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return None
        off = 0
        while off + self._EVENT.size <= len(data):
            wd, mask, _cookie, length = self._EVENT.unpack_from(data, off)
            name = data[off + self._EVENT.size:off + self._EVENT.size + length]
            off += self._EVENT.size + length
            name_s = os.fsdecode(name.rstrip(b"\0"))
            # A watched file, the directory itself, or a lost event (IN_Q_OVERFLOW).
            if name_s in self.names.get(wd, ()) or mask & (0x400 | 0x800 | 0x4000):
                return name_s or "a watched directory"
        return None


def _context(pid: int | str) -> dict[str, Any]:
    """Who process `pid` is, as far as a run's behaviour depends on it."""
    ctx: dict[str, Any] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in _STATUS_FIELDS:
                ctx[key] = " ".join(value.split())
    for ns in _NAMESPACES:
        try:
            ctx[f"ns/{ns}"] = os.readlink(f"/proc/{pid}/ns/{ns}")
        except FileNotFoundError:
            pass
    ctx["root"] = os.stat(f"/proc/{pid}/root")[1:3]        # (ino, dev)
    try:
        with open(f"/proc/{pid}/attr/current", "rb") as f:
            ctx["lsm"] = f.read()
    except OSError:
        pass
    return ctx


def _peer(conn: socket.socket) -> tuple[int, int]:
    """The caller's pid and a pidfd of it (taken by the kernel at connect, so a
    recycled pid cannot stand in for it)."""
    pid, _uid, _gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET,
                                                          socket.SO_PEERCRED, 12))
    try:
        pidfd = conn.getsockopt(socket.SOL_SOCKET, SO_PEERPIDFD)
    except OSError:
        pidfd = os.pidfd_open(pid)
    return pid, pidfd


def _alive(pidfd: int) -> bool:
    p = select.poll()
    p.register(pidfd, select.POLLIN)
    return not p.poll(0)


@dataclass
class Run:
    pid: int
    pidfd: int
    conn: socket.socket
    caller_gone: bool = False


@dataclass
class Spare:
    """A run forked ahead, waiting for its request on ``sock``."""
    pid: int
    pidfd: int
    sock: socket.socket
    worker: int | None        # its worker's pid, if it has one


@dataclass
class Zygote:
    """The workers' parent (quark.template.worker.zygote)."""
    pid: int
    pidfd: int
    sock: socket.socket


@dataclass
class Stats:
    started: float = field(default_factory=time.time)
    served: int = 0
    refused: int = 0
    max_run_rss_kib: int = 0
    recent_rss_kib: list[int] = field(default_factory=list)   # peak RSS of the last runs


def _check_request(words: list[str] | None, fds: list[int]
                   ) -> tuple[dict[str, Any] | None, str | None]:
    """(the request, None) or (None, why it is refused)."""
    if not words:
        return None, "unreadable request"
    if words == ["status"]:
        return {"op": "status"}, None if not fds else "a status request carries no fds"
    try:
        msg = wire.parse_run(words)
    except ValueError as e:
        return None, f"malformed request: {e}"
    if len(fds) != 4:
        return None, "a request carries fds 0, 1, 2 and the working directory"
    if not wire.served(msg["argv"]):    # type: ignore[arg-type]
        return None, "not a command the template serves"
    return {"op": "run", **msg}, None


class Template:
    def __init__(self, path: str) -> None:
        self.path = path
        self.runs: dict[int, Run] = {}          # by pidfd
        # The next run's worker: the run's end of its socket pair, and its pid.
        self.spare_worker: tuple[socket.socket, int] | None = None
        self.by_conn: dict[int, Run] = {}       # by connection fd
        self.stats = Stats()
        self.stopping = False
        self.listener: socket.socket | None = None
        self.wake: tuple[int, int] = (-1, -1)
        self.poll = select.poll()
        self.context = _context("self")
        self.code = _code_files()
        self.watch = _Watch.of(self.code)
        self.stale: str | None = None
        self.spare: Spare | None = None         # the next run, forked ahead
        self.zygote: Zygote | None = None

    # ---- set-up

    def listen(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(self.path)
        except FileNotFoundError:
            pass
        except ConnectionRefusedError:
            os.unlink(self.path)        # left by a template that died
        else:
            raise OSError(f"a template already listens on {self.path}")
        finally:
            probe.close()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        old = os.umask(0o177)           # the socket is born 0600: no window for others
        try:
            s.bind(self.path)
        finally:
            os.umask(old)
        s.listen(64)
        self.listener = s
        self.poll.register(s, select.POLLIN)
        # Objects made so far stay out of the collector's reach: a collection in a run
        # would otherwise touch (and so copy) every page of them.
        gc.freeze()
        self._refill()

    def _refill(self) -> None:
        """Once the run forked ahead is taken: fork the next one's worker, then the
        next run itself (see _fork). Other requests (status) leave them be."""
        if self.spare is not None or self.stopping:
            return
        if self.zygote is None:
            try:
                self._start_zygote()
            except OSError as e:
                log.warning("template: no workers' parent: %s", e)
        if self.spare_worker is None:
            try:
                self._fork_worker()
            except OSError as e:
                log.warning("template: no worker for the next run: %s", e)
        try:
            self._fork_spare()
        except OSError as e:
            log.warning("template: no run forked ahead: %s", e)

    # ---- the loop

    def serve(self) -> None:
        assert self.listener is not None

        def stop(_sig: int, _frame: Any) -> None:
            self.stopping = True

        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, stop)
        # poll() is restarted after a handler (PEP 475): the wakeup pipe ends it.
        wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(wake_w)
        self.poll.register(wake_r, select.POLLIN)
        self.wake = (wake_r, wake_w)
        log.info("template: listening on %s (pid %d, %d modules)", self.path, os.getpid(),
                 len(sys.modules))
        try:
            while not self.stopping:
                try:
                    events = self.poll.poll()
                except InterruptedError:
                    continue
                for fd, ev in events:
                    if fd == wake_r:
                        try:
                            os.read(wake_r, 4096)
                        except BlockingIOError:
                            pass
                    elif self.listener is not None and fd == self.listener.fileno():
                        self._accept()
                    elif fd in self.runs:
                        self._reap(self.runs[fd])
                    elif self.spare is not None and fd == self.spare.pidfd:
                        self._spare_died()
                    elif self.zygote is not None and fd == self.zygote.pidfd:
                        self._zygote_died()
                    elif fd in self.by_conn:
                        self._caller_event(self.by_conn[fd])
        finally:
            self._close_listener()
            signal.set_wakeup_fd(-1)
        # Runs still going outlive the template: each reports its status to its caller
        # itself. Lost with the template: the report of a run that dies without saying
        # so, and the killing of a run whose caller dies.
        log.info("template: stopped after %d runs (%d still running)", self.stats.served,
                 len(self.runs))

    def _close_listener(self) -> None:
        if self.listener is None:
            return
        self.poll.unregister(self.listener)
        self.listener.close()
        self.listener = None
        try:
            os.unlink(self.path)
        except OSError:
            pass

    def _accept(self) -> None:
        assert self.listener is not None
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return
        conn.settimeout(2.0)        # a caller that connects and says nothing
        msg, fds = wire.receive(conn)
        if msg is None and not fds:
            conn.close()            # a probe (another template's, a health check)
            return
        try:
            self._handle(conn, msg, fds)
        except Exception:  # one bad request must not end the template
            log.exception("template: request failed")
            conn.close()
        finally:
            for fd in fds:
                os.close(fd)
        # After the caller's fds are closed: a worker forked with them would hold
        # the caller's pipes open (its reader would wait for EOF for ever).
        self._refill()

    def _refuse(self, conn: socket.socket, reason: str) -> None:
        self.stats.refused += 1
        log.info("template: refused: %s", reason)
        try:
            wire.send(conn, ["refused", reason])
        except OSError:
            pass
        conn.close()

    def _handle(self, conn: socket.socket, words: list[str] | None,
                fds: list[int]) -> None:
        msg, reason = _check_request(words, fds)
        if msg is None or reason is not None:
            return self._refuse(conn, reason or "refused")
        pid, pidfd = _peer(conn)
        try:
            try:
                ctx = _context(pid)
            except OSError:
                return self._refuse(conn, "the caller is gone")
            if not _alive(pidfd):
                return self._refuse(conn, "the caller is gone")
            differs = sorted(k for k in set(ctx) | set(self.context)
                             if ctx.get(k) != self.context.get(k))
            if differs:
                return self._refuse(conn, f"the caller differs from the template in: "
                                          f"{', '.join(differs)}")
            if msg["op"] == "status":
                wire.send(conn, ["stats", json.dumps(self.status())])
                conn.close()
                return
            stale = self._stale()
            if stale:
                return self._refuse(conn, stale)
            if threading.active_count() != 1:
                return self._refuse(conn, "the template has threads; it cannot fork")
            self._fork(conn, msg, fds, pid, words or [])
        finally:
            os.close(pidfd)

    def _stale(self) -> str | None:
        if self.stale is None and self.watch is not None:
            changed = self.watch.changed()
            if changed is None:
                return None         # nothing happened in those directories
            os.close(self.watch.fd)
            self.watch = None       # from now on, stat every file, as without inotify
        if self.stale is None:
            for path, mtime in self.code.items():
                try:
                    now = os.stat(path).st_mtime_ns
                except OSError:
                    now = None
                if now != mtime:
                    self.stale = (f"{path} changed since the template started: restart "
                                  f"`quark template serve` to serve the new code")
                    log.warning("template: %s", self.stale)
                    break
        return self.stale

    def status(self) -> dict[str, Any]:
        rss = 0
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1])
        s = self.stats
        return {"pid": os.getpid(), "socket": self.path, "since": s.started,
                "served": s.served, "refused": s.refused, "running": len(self.runs),
                "runs": sorted(r.pid for r in self.runs.values()),
                "template_rss_kib": rss, "max_run_rss_kib": s.max_run_rss_kib,
                "recent_run_rss_kib": s.recent_rss_kib, "stale": self._stale(),
                "spare": ({"run": self.spare.pid, "worker": self.spare.worker}
                          if self.spare is not None else None),
                "workers_parent": self.zygote.pid if self.zygote is not None else None}

    def _fork(self, conn: socket.socket, msg: dict[str, Any], fds: list[int],
              caller: int, words: list[str]) -> None:
        """Start the run: hand the request to the run forked ahead (the fork, and the
        run's first copies of the template's pages, ~3-5 ms here, are then behind
        it), or fork it now. The caller gets the run's pid first: a run that ends at
        once (a bad config file) must not say its status before that."""
        spare, self.spare = self.spare, None
        if spare is not None and not _alive(spare.pidfd):
            self._discard(spare)
            spare = None
        if spare is None:
            pid = self._fork_run(lambda: self._child(conn, msg, fds, caller))
            pidfd = os.pidfd_open(pid)
            self.poll.register(pidfd, select.POLLIN)
        else:
            pid, pidfd = spare.pid, spare.pidfd
        self.stats.served += 1
        run = Run(pid, pidfd, conn)
        self.runs[pidfd] = run
        self.by_conn[conn.fileno()] = run
        self.poll.register(conn, select.POLLIN)
        try:
            wire.send(conn, ["pid", str(pid)], [pidfd])
        except OSError:
            self._caller_gone(run)
        if spare is None:
            return
        if not run.caller_gone:
            try:
                wire.send(spare.sock, [str(caller), *words], [conn.fileno(), *fds])
            except OSError as e:
                # It died in the last microseconds: the template reaps it and tells
                # the caller, as of a run that died at its start.
                log.warning("template: the run forked ahead could not take the request: "
                            "%s", e)
        spare.sock.close()

    def _fork_run(self, body: Callable[[], int]) -> int:
        """Fork a run, now or ahead: the child drops the template's fds, takes the
        worker forked for it and its own process group (a ^C in the template's
        terminal is not for it), and exits with ``body()``'s status."""
        for f in (sys.stdout, sys.stderr):
            f.flush()
        spare_worker, self.spare_worker = self.spare_worker, None
        try:
            pid = os.fork()
        except OSError:
            self.spare_worker = spare_worker    # still the next run's
            raise
        if pid == 0:
            status = 1
            try:
                self._forget_in_child()
                if spare_worker is not None:
                    from . import worker
                    worker.sock = spare_worker[0]
                os.setpgid(0, 0)
                status = body()
            finally:
                os._exit(status)
        if spare_worker is not None:
            spare_worker[0].close()         # the run's and its worker's now
        return pid

    def _fork_spare(self) -> None:
        """Fork the next run ahead: it drops what it has of the template's, takes the
        spare worker, makes a network namespace and waits for its request (see
        _fork)."""
        hand, end = socket.socketpair(socket.AF_UNIX,
                                      socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        worker_pid = self.spare_worker[1] if self.spare_worker is not None else None
        try:
            pid = self._fork_run(lambda: self._spare_child(end, hand))
        except OSError:
            hand.close()
            raise
        finally:
            end.close()
        pidfd = os.pidfd_open(pid)
        self.poll.register(pidfd, select.POLLIN)
        self.spare = Spare(pid, pidfd, hand, worker_pid)

    def _spare_died(self) -> None:
        """The run forked ahead died before its request (killed by someone): the
        next request forks one then (and the next refill another spare)."""
        assert self.spare is not None
        spare, self.spare = self.spare, None
        log.warning("template: the run forked ahead (pid %d) died", spare.pid)
        self._discard(spare)

    def _discard(self, child: Spare | Zygote) -> None:
        """Kill (if need be), reap and forget a child the template keeps ahead."""
        self.poll.unregister(child.pidfd)
        try:
            signal.pidfd_send_signal(child.pidfd, signal.SIGKILL)
        except OSError:
            pass
        os.waitpid(child.pid, 0)
        os.close(child.pidfd)
        child.sock.close()

    def _start_zygote(self) -> None:
        """Fork the workers' parent (quark.template.worker.zygote): it holds what only
        workers use (net_bridge's pyroute2: ~5 MiB), so runs forked from the template
        do not carry it."""
        from . import worker

        def child(end: socket.socket) -> None:
            self._forget_in_child()
            worker.close_all_but({0, 1, 2, end.fileno()})
            os.setpgid(0, 0)
            worker.zygote(end)
        pid, mine = worker.fork_paired(child)
        mine.settimeout(10.0)       # its imports, then a fork per request
        pidfd = os.pidfd_open(pid)
        self.poll.register(pidfd, select.POLLIN)
        self.zygote = Zygote(pid, pidfd, mine)

    def _zygote_died(self) -> None:
        assert self.zygote is not None
        z, self.zygote = self.zygote, None
        log.warning("template: the workers' parent (pid %d) died", z.pid)
        self._discard(z)

    def _fork_worker(self) -> None:
        """A worker (quark.template.worker) for the next run, forked ahead by the
        workers' parent: warm when the run needs it, some milliseconds into its
        start-up. It waits for the run's first job to know whose cgroups to join."""
        if self.zygote is None:
            raise OSError("no workers' parent")
        try:
            wire.send(self.zygote.sock, ["worker"])
            reply, fds = wire.receive(self.zygote.sock, maxfds=1)
        except OSError as e:
            raise OSError(f"the workers' parent: {e}") from e
        if not reply or reply[0] != "worker" or len(reply) != 2 or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise OSError("the workers' parent did not answer")
        self.spare_worker = (socket.socket(fileno=fds[0]), int(reply[1]))

    # ---- runs

    def _caller_event(self, run: Run) -> None:
        try:
            data = run.conn.recv(1, socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._caller_gone(run)

    def _caller_gone(self, run: Run) -> None:
        """The caller died (or was killed) during its run: so does the run, as the
        caller's own sandbox process would have."""
        if run.caller_gone:
            return
        run.caller_gone = True
        self.poll.unregister(run.conn)
        try:
            signal.pidfd_send_signal(run.pidfd, signal.SIGKILL)
        except OSError:
            pass
        # Also the normal end: the run sent its status, its caller left, and the run
        # is between that and its _exit.
        log.debug("template: caller of run %d went away; run killed", run.pid)

    def _reap(self, run: Run) -> None:
        _pid, ws, ru = os.wait4(run.pid, 0)
        self.stats.recent_rss_kib = [*self.stats.recent_rss_kib[-(RECENT - 1):], ru.ru_maxrss]
        self.stats.max_run_rss_kib = max(self.stats.max_run_rss_kib, ru.ru_maxrss)
        if not run.caller_gone:
            self.poll.unregister(run.conn)
            try:
                wire.send(run.conn, ["wait_status", str(ws)])
            except OSError:
                pass            # the run's own word reached the caller, who left
        self.poll.unregister(run.pidfd)
        del self.runs[run.pidfd]
        del self.by_conn[run.conn.fileno()]
        os.close(run.pidfd)
        run.conn.close()

    # ---- in the forked run

    def _forget_in_child(self) -> None:
        """In a forked run or the workers' parent: default signal handling, and none
        of the template's fds (the listener, other runs' connections and pidfds)."""
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_DFL)
        signal.set_wakeup_fd(-1)
        for fd in self.wake:
            if fd >= 0:
                os.close(fd)
        if self.listener is not None:
            self.listener.close()
        for run in self.runs.values():
            os.close(run.pidfd)
            run.conn.close()
        if self.watch is not None:
            os.close(self.watch.fd)
        if self.spare_worker is not None:
            self.spare_worker[0].close()
        if self.spare is not None:
            os.close(self.spare.pidfd)
            self.spare.sock.close()
        if self.zygote is not None:
            os.close(self.zygote.pidfd)
            self.zygote.sock.close()

    def _spare_child(self, end: socket.socket, hand: socket.socket) -> int:
        """A run forked ahead: wait for the request the template hands over (the
        caller's pid, the request's words; the caller's connection, fds 0-2 and
        working directory), then run it. EOF: not needed (the template stopped).

        Meanwhile, at a low CPU priority (the run it was forked beside is still
        starting), it makes the empty network namespace most runs ask for (~5 ms of
        the kernel's time), which its run uses unless a plugin hands it one wired
        ahead (quark_network_adopt)."""
        hand.close()                # the template's end
        priority: int | None = None
        if os.geteuid() == 0:       # only root may raise it back for the run
            try:
                priority = os.getpriority(os.PRIO_PROCESS, 0)
                os.setpriority(os.PRIO_PROCESS, 0, min(priority + 10, 19))
            except OSError:
                priority = None
        from quark.sandbox import netns
        try:
            netns.prepared = netns.prepare()
        except OSError as e:
            log.debug("template: no network namespace made ahead: %s", e)
        self._prepare_machine(end)
        words, fds = wire.receive(end, maxfds=5)
        end.close()
        if priority is not None:
            try:    # nice is per thread: before the run starts any
                os.setpriority(os.PRIO_PROCESS, 0, priority)
            except OSError:
                pass
        if not words or len(fds) != 5:
            for fd in fds:
                os.close(fd)
            return 0
        caller = int(words[0])
        msg = wire.parse_run(words[1:])     # checked by the template already
        conn = socket.socket(fileno=fds[0])
        return self._child(conn, {"op": "run", **msg}, fds[1:], caller)

    @staticmethod
    def _prepare_machine(end: socket.socket) -> None:
        """Make the VM the run will most likely ask for (the configuration this
        template would read, as the run reads it), unless its request is here
        already: ~3 ms of VM set-up the run no longer waits for. A run that asks
        for another VM (a changed configuration) makes its own. Its memory is the
        run's: a frame is charged to the cgroup of whoever first touches it, and
        that is the run, in its caller's cgroup (cgroups.follow)."""
        from quark.config import ConfigError, load_config
        from quark.core import vm
        p = select.poll()
        p.register(end, select.POLLIN)
        if p.poll(0):
            return
        try:
            k = load_config().kernel
            qcall = (os.environ.get("QUARK_SYSCALL_PATH") or k.syscall_path) == "qcall"
            vm.prepare(k.memory_mib << 20, qcall, k.qcall_spin)
        except (ConfigError, OSError) as e:
            log.debug("template: no VM made ahead: %s", e)

    def _child(self, conn: socket.socket, msg: dict[str, Any], fds: list[int],
               caller: int) -> int:
        from quark.oci import cgroups

        warnings = cgroups.follow(caller)
        os.fchdir(fds[3])
        for i in range(3):
            os.dup2(fds[i], i)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        fds.clear()
        os.umask(msg["umask"])
        import resource

        for name, (soft, hard) in msg["rlimits"].items():
            which = getattr(resource, name, None)
            if not isinstance(which, int):
                continue
            try:
                resource.setrlimit(which, (soft, hard))
            except (OSError, ValueError):
                warnings.append(f"{name}: cannot set {soft}/{hard}")
        os.environ.clear()
        os.environ.update(msg["env"])
        argv = msg["argv"]
        sys.argv = [msg["argv0"], *argv]
        from quark import cli
        from quark import log as qlog

        qlog.restart_phases(float(msg["t0"]))
        qlog.phase("template")
        for w in warnings:
            log.warning("template run: %s", w)
        try:
            status = cli.main(argv)
        except SystemExit as e:             # argparse
            status = e.code if isinstance(e.code, int) else 1
        for f in (sys.stdout, sys.stderr):
            try:
                f.flush()
            except (OSError, ValueError):
                pass
        qlog.flush()
        try:
            conn.settimeout(1.0)
            wire.send(conn, ["status", str(status)])
        except OSError:
            pass
        return status


def serve(path: str) -> int:
    """`quark template serve`: preload, listen, serve until SIGTERM/SIGINT."""
    preload()
    t = Template(path)
    t.listen()
    t.serve()
    return 0


def status(path: str) -> dict[str, Any]:
    """`quark template status`: what the template at `path` says of itself."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        s.settimeout(5.0)
        s.connect(path)
        wire.send(s, ["status"])
        reply, fds = wire.receive(s)
        for fd in fds:
            os.close(fd)
    finally:
        s.close()
    if reply and reply[0] == "refused" and len(reply) == 2:
        raise OSError(f"refused: {reply[1]}")
    if not reply or reply[0] != "stats" or len(reply) != 2:
        raise OSError(f"no answer from the template on {path}")
    result: dict[str, Any] = json.loads(reply[1])
    return result
