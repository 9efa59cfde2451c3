"""A warm helper process beside each sandbox: a template's run (quark.template), or
a foreground run without one (``start``).

A run does blocking set-up work beside building its VM and kernel: net_bridge's
netlink requests are ~10 ms of Python. In a thread that work competes for the run's
GIL (it slowed the build by ~9 ms here and still finished late); in a fork of the
run it costs ~5 ms of fork, plus a copy of every page either side writes afterwards.
So each run gets a second process, its worker, which has what the work needs
imported, and the run hands it the work: a function by module and name, its
arguments pickled, fds attached.

For plugins: ``available()`` says whether this process has a worker; ``submit(fn,
args)`` runs ``fn(*args)`` there and ``Job.result()`` returns what it returned (or
raises OSError); a function that returns ``WithFds`` passes fds back to the run. The
worker serves until the run releases it (after start-up, see quark.sandbox.process)
or exits. The socket pair is the run's and its worker's alone, both forked from
quark's own processes: pickle is not read from anyone else.

Workers are forked by the workers' parent (``zygote``), itself forked once from the
template, so that what only workers import stays out of the runs.

Before its run arrives, the worker lets plugins work ahead (the
``quark_network_prepare`` hook): net_bridge wires a namespace there, which its run
then adopts. What no run claims is undone by the functions registered with
``at_exit`` when the worker ends.
"""

from __future__ import annotations

import importlib
import os
import pickle
import socket
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

from .client import MAX_MESSAGE, fds_of, rights

_ANCILLARY = socket.CMSG_LEN(16 * 4)     # room for the fds of one message

sock: socket.socket | None = None   # in a run: its end of the pair
_next = 0
_done: dict[int, tuple[Any, ...]] = {}
_at_exit: list[Callable[[], None]] = []     # in the worker
early = False       # in a sandbox: its worker came from start(), nothing was wired ahead


class WithFds(NamedTuple):
    """What a worker function returns to pass fds to the run: the worker closes its
    copies, and the run's ``Job.result()`` is a WithFds of the fds it received
    (the run's to close)."""
    value: Any
    fds: list[int]


def available() -> bool:
    return sock is not None


def at_exit(fn: Callable[[], None]) -> None:
    """In the worker: call ``fn()`` when the worker ends (its run released it, or
    never came); failures are ignored."""
    _at_exit.append(fn)


class Job:
    def __init__(self, number: int) -> None:
        self.number = number

    def result(self) -> Any:
        """What the function returned; OSError with its message if it raised."""
        while self.number not in _done:
            reply = _receive_reply()
            _done[reply[0]] = reply
        _n, kind, value, fds = _done.pop(self.number)
        if kind == "error":
            errno_, text = value
            raise OSError(errno_, text) if errno_ else OSError(text)
        if kind == "fds":
            return WithFds(value, fds)
        return value


def _receive_reply() -> tuple[Any, ...]:
    if sock is None:
        raise OSError("no worker")
    try:
        data, anc, _flags, _addr = sock.recvmsg(MAX_MESSAGE, _ANCILLARY)
    except OSError as e:
        raise OSError(f"the template's worker: {e.strerror or e}") from e
    fds = fds_of(anc)
    if not data:
        for fd in fds:
            os.close(fd)
        raise OSError("the template's worker process died")
    reply: tuple[Any, ...] = pickle.loads(data)
    return (*reply, fds)


def submit(fn: Callable[..., Any], args: tuple[Any, ...],
           fds: dict[int, int] | None = None) -> Job:
    """Run ``fn(*args)`` in the worker. ``fds``: {argument position: fd}; the fd is
    passed along and the worker's copy replaces that argument (the function's to
    close; the caller still owns its own)."""
    global _next
    if sock is None:
        raise OSError("no worker")
    _next += 1
    positions = sorted(fds or {})
    payload = pickle.dumps((_next, os.getpid(), fn.__module__, fn.__qualname__, args,
                            positions))
    sock.sendmsg([payload], rights([(fds or {})[p] for p in positions]))
    return Job(_next)


def release() -> None:
    """Done with the worker (it exits when it reads the end)."""
    global sock
    if sock is not None:
        sock.close()
        sock = None


def _resolve(module: str, qualname: str) -> Callable[..., Any]:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[no-any-return]


def close_all_but(keep: set[int]) -> None:
    """Close every fd of this process but ``keep`` (a fork that must hold nothing of
    its parent's: listeners, other runs' connections, pidfds)."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) not in keep:
            try:
                os.close(int(name))
            except OSError:
                pass


def fork_paired(child: Callable[[socket.socket], None]) -> tuple[int, socket.socket]:
    """A SOCK_SEQPACKET pair and a child forked to run ``child(its end)`` and exit
    (1 if it raised); returns the child's pid and this process's end."""
    mine, end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
    try:
        pid = os.fork()
    except OSError:
        mine.close()
        end.close()
        raise
    if pid == 0:
        code = 0
        try:
            mine.close()
            child(end)
        except SystemExit as e:    # sys.exit() (a worker's SIGTERM handler) says how
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
        except BaseException:  # noqa: BLE001 - never return into the parent's code
            code = 1
        finally:
            os._exit(code)
    end.close()
    return pid, mine


def zygote(s: socket.socket) -> None:
    """The workers' parent, forked once from the template: it imports what the
    workers' jobs use and runs do not (quark_preload(where="worker"): net_bridge's
    pyroute2), then forks a worker per request of the template and hands back the
    run's end of its socket pair and its pid. The kernel reaps the workers (SIGCHLD
    ignored); it ends when the template does."""
    import gc
    import signal

    from quark.plugins import manager

    from .client import receive, send

    signal.signal(signal.SIGCHLD, signal.SIG_IGN)
    manager.preload(where="worker")
    gc.freeze()
    while True:
        words, fds = receive(s)
        for fd in fds:
            os.close(fd)
        if not words:
            return
        pid, run_end = fork_paired(_worker_child)
        try:
            send(s, ["worker", str(pid)], [run_end.fileno()])
        except OSError:
            return
        finally:
            run_end.close()


def start() -> None:
    """A worker for this process, a sandbox not forked from a template, forked while
    it is still small (before structlog, asyncio and the kernel are imported): the
    worker imports what plugins' jobs use (quark_preload(where="worker"): pyroute2,
    ~40 ms) beside the sandbox's own imports, so that the network wiring can start
    at once, beside the VM's build, instead of after a helper's imports. It wires
    nothing ahead (quark_network_prepare is the template's); a grandchild, so that
    nobody has to reap it; it ends when released."""
    global sock, early
    if sock is not None:
        return
    pid, mine = fork_paired(_early_child)
    os.waitpid(pid, 0)
    sock, early = mine, True


def _early_child(end: socket.socket) -> None:
    if os.fork():
        return                  # the grandchild works; this child is reaped at once
    os.setpgid(0, 0)            # a ^C in the caller's terminal is for the sandbox
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):        # never hold the caller's pipes open
        os.dup2(null, fd)
    close_all_but({0, 1, 2, end.fileno()})
    from quark.plugins import manager
    manager.preload(where="worker")
    serve(end, prepare=False)


def _worker_child(end: socket.socket) -> None:
    import signal
    # Its own children (iptables, via subprocess) it waits for itself.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    close_all_but({0, 1, 2, end.fileno()})
    serve(end)


def serve(s: socket.socket, prepare: bool = True) -> None:
    """The worker's loop: one job at a time, in order, until the run's end closes.
    Each job starts in the worker's own network namespace (net_bridge's wiring
    enters the container's). ``prepare``: let plugins wire ahead first (a
    template's worker)."""
    import signal
    import sys

    def stop(_sig: int, _frame: Any) -> None:
        sys.exit(0)         # through the finally below: undo what no run claimed

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    try:
        _serve(s, prepare)
    finally:
        for fn in reversed(_at_exit):
            try:
                fn()
            except Exception:  # noqa: BLE001, S110 - the worker is ending anyway
                pass


class _Preparing:
    """Plugins working ahead of the run (quark_network_prepare), in a thread at a
    low CPU priority (Linux's nice value is per thread): the run this worker was
    forked beside is still starting, and the work is for the next one, which may
    not even want it. The run that arrives first raises it back and waits."""

    def __init__(self) -> None:
        self.priority = os.getpriority(os.PRIO_PROCESS, 0)
        self.thread = threading.Thread(target=self._run, name="prepare", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from quark.plugins.manager import make_manager
        try:
            os.setpriority(os.PRIO_PROCESS, 0, min(self.priority + 10, 19))
        except OSError:
            pass
        try:
            make_manager().network_prepare()
        except Exception as e:  # noqa: BLE001 - the run does it all itself
            import logging
            logging.getLogger("quark.template").warning("worker: preparing: %s", e)

    def finish(self) -> None:
        if self.thread.is_alive() and self.thread.native_id is not None:
            try:    # root may raise a priority back; others wait at the low one
                os.setpriority(os.PRIO_PROCESS, self.thread.native_id, self.priority)
            except OSError:
                pass
        self.thread.join()


def _serve(s: socket.socket, prepare: bool) -> None:
    from quark.sandbox import netns_ffi

    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    preparing: _Preparing | None = _Preparing() if prepare else None
    joined = False
    while True:
        try:
            data, anc, _flags, _addr = s.recvmsg(MAX_MESSAGE, _ANCILLARY)
        except OSError:
            data = b""
        if preparing is not None:
            preparing.finish()      # before a job, or before at_exit undoes its work
            preparing = None
        if not data:
            return
        fds = fds_of(anc)
        number, run, module, qualname, args, positions = pickle.loads(data)
        if not joined:
            # Forked ahead of its run: charged to the run's cgroups from its first job.
            from quark.oci import cgroups
            cgroups.follow(run)
            joined = True
        args = list(args)
        for p, fd in zip(positions, fds):
            args[p] = fd
        try:
            reply: tuple[Any, ...] = (number, "ok", _resolve(module, qualname)(*args))
        except OSError as e:
            reply = (number, "error", (e.errno or 0, e.strerror or str(e)))
        except Exception as e:  # noqa: BLE001 - reported to the run, one line
            reply = (number, "error", (0, f"{type(e).__name__}: {e}"))
        finally:
            netns_ffi.setns(home, netns_ffi.CLONE_NEWNET)
        passed: list[int] = []
        if reply[1] == "ok" and isinstance(reply[2], WithFds):
            passed = list(reply[2].fds)
            reply = (number, "fds", reply[2].value)
        try:
            data = pickle.dumps(reply)
        except Exception as e:  # noqa: BLE001 - an unpicklable result
            data = pickle.dumps((number, "error", (0, f"result not picklable: {e}")))
            passed = []
        try:
            s.sendmsg([data], rights(passed))
        except OSError:
            return
        finally:
            for fd in passed:
                os.close(fd)
