"""The sandbox process of the OCI lifecycle: build, report to `create`, serve, exit.

`create` forks this process (`run` becomes it). It builds the VM, kernel and VFS and
prepares pid 1, runs the create-time hooks, writes the pid file, binds the control
socket, and only then tells `create` it succeeded (through a pipe: one line, "ok" or
the error). It then serves the control socket on its event loop until pid 1 exits,
marks the state stopped and exits with pid 1's status (128+n for signal n): conmon and
containerd's shim wait for this process and take its status as the container's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from quark.log import phase

from .control import Conn, ControlServer
from .process import Sandbox, SandboxError, _new_loop, shell_status

log = logging.getLogger("quark.sandbox")

# Before `start` pid 1 has not run; these end a created container as if pid 1 had
# died of them (containerd and podman remove a created container with SIGKILL).
ENDS_CREATED = frozenset((signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP))


class ContainerService:
    """One container's sandbox process: the Sandbox plus its control socket."""

    def __init__(self, spec: Any, config: Any, control_path: Path,
                 record: Callable[..., None], run_hooks: Callable[[str], None]) -> None:
        """:param record: record(**fields) saves state changes (status, pid,
            exit_status) where `quark state` reads them; the OCI layer owns the format.
        :param run_hooks: run_hooks(kind) runs the OCI hooks of that kind, raising on a
            fatal failure."""
        self.spec, self.config, self.control_path = spec, config, control_path
        self.record, self.run_hooks = record, run_hooks
        self.sb: Sandbox | None = None
        self.preserve_fds = 0           # --preserve-fds: host fds 3.. passed to init
        self.started = False
        self.paused = False
        self.execs: dict[int, Conn] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ended: asyncio.Future[int] | None = None
        self.server: ControlServer | None = None

    # ---- create

    def build(self, pid_file: str | None) -> None:
        """Everything `create` promises; raises SandboxError/OciError (one line)."""
        self.sb = Sandbox(self.spec, self.config)
        self.sb.create_init(extra_fds=self.preserve_fds)
        pid = os.getpid()
        self.record(pid=pid)
        for kind in ("prestart", "createRuntime", "createContainer"):
            self.run_hooks(kind)
        if pid_file:
            tmp = f"{pid_file}.{pid}.tmp"
            with open(tmp, "w") as f:
                f.write(str(pid))
            os.rename(tmp, pid_file)
        self.server = ControlServer(self.control_path, self.handle)
        self.record(status="created")
        phase("created")

    # ---- serve

    def run(self, autostart: bool) -> int:
        """Serve until pid 1 exits; returns its status as a shell shows it."""
        from quark.kernel.taskrun import install_kick_handler

        assert self.sb is not None and self.server is not None
        install_kick_handler()
        loop = self.loop = _new_loop()
        asyncio.set_event_loop(loop)
        self.ended = loop.create_future()
        self.server.start(loop)
        if autostart:
            # Before init runs: a signal sent once the container is up (it printed
            # "ready") must reach it, not kill this process with the default action.
            self.sb.forward_signals(loop)
            self._start(poststart=True)
            phase("started")
        try:
            status = loop.run_until_complete(self._serve())
        finally:
            self.server.close()
            for conn in self.execs.values():     # their processes died with pid 1
                conn.send({"exit": signal.SIGKILL})
                conn.close()
        phase("guest")
        self.record(status="stopped", exit_status=status)
        loop.close()
        try:
            self.sb.close()
        except Exception as e:  # noqa: BLE001 - the exit status matters more
            log.warning("closing the sandbox: %s", e)
        phase("closed")
        return status

    async def _serve(self) -> int:
        assert self.sb is not None and self.ended is not None
        task = asyncio.ensure_future(self.sb.serve(autostart=False))
        done, _ = await asyncio.wait([task, self.ended], return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return shell_status(task.result())
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
        return self.ended.result()

    def _start(self, poststart: bool = False) -> None:
        assert self.sb is not None
        self.sb.start_init()
        self.started = True
        self.record(status="running")
        if poststart:       # `run`: no `start` command runs them
            self.run_hooks("poststart")

    # ---- requests (on the loop thread)

    def handle(self, conn: Conn, req: dict[str, Any]) -> None:
        op = req.get("op")
        fn = getattr(self, f"_op_{op}", None) if isinstance(op, str) else None
        if fn is None:
            conn.reply_error(f"unknown request {op!r}")
            return
        fn(conn, req)

    def _reply(self, conn: Conn, **fields: Any) -> None:
        conn.send({"ok": True, **fields})
        conn.close()

    def _op_start(self, conn: Conn, req: dict[str, Any]) -> None:
        if self.started:
            conn.reply_error("cannot start a container that has already started")
            return
        try:
            self.run_hooks("startContainer")
        except Exception as e:
            conn.reply_error(str(e))
            self._end(128 + signal.SIGKILL)
            return
        self._start()
        self._reply(conn)

    def _end(self, status: int) -> None:
        if self.ended is not None and not self.ended.done():
            self.ended.set_result(status)

    def _op_kill(self, conn: Conn, req: dict[str, Any]) -> None:
        assert self.sb is not None
        sig, pid = int(req.get("signal", signal.SIGTERM)), req.get("pid")
        if not 0 < sig < 65:
            conn.reply_error(f"invalid signal {sig}")
            return
        if pid is not None:
            self._signal_pid(int(pid), sig)
        elif not self.started:
            if sig in ENDS_CREATED:
                self._end(128 + sig)
        else:
            if self.paused and sig == signal.SIGKILL:
                self.sb.resume()        # a frozen guest cannot die
                self.paused = False
            self.sb.signal(sig, all_processes=bool(req.get("all")))
        self._reply(conn)

    def _signal_pid(self, pid: int, sig: int) -> None:
        from quark.kernel.signals import SigInfo
        from quark.kernel.task_signals import send_to_group

        assert self.sb is not None
        k = self.sb.kernel
        with k.lock:
            tg = k.groups.get(pid)
            if tg is not None and not tg.zombie:
                send_to_group(tg, SigInfo(sig, 0, pid=0, uid=0))

    def _op_exec(self, conn: Conn, req: dict[str, Any]) -> None:
        assert self.sb is not None and self.loop is not None
        if not self.started:
            conn.reply_error("cannot exec in a container that has not started")
            return
        fds = list(conn.fds)
        conn.fds = []
        stdio = tuple(fds[i] if i is not None and 0 <= i < len(fds) else None
                      for i in (req.get("stdio") or [None, None, None]))
        loop = self.loop
        holder: dict[str, int] = {}

        def on_exit(ws: int) -> None:        # vCPU thread, kernel lock held
            loop.call_soon_threadsafe(self._exec_done, holder, conn, ws)

        try:
            t = self.sb.spawn(list(req["args"]), list(req.get("env") or []),
                              req.get("cwd") or "/", int(req.get("uid", 0)),
                              int(req.get("gid", 0)), tuple(req.get("groups") or ()),
                              stdio, umask=req.get("umask"), on_exit=on_exit)  # type: ignore[arg-type]
        except SandboxError as e:
            conn.reply_error(str(e))
            return
        finally:
            for fd in fds:                       # the kernel holds its own dups
                with contextlib.suppress(OSError):
                    os.close(fd)
        holder["pid"] = t.pid
        self.execs[t.pid] = conn
        # The holder stands for the process: if it dies (a client SIGKILLs the pid it
        # knows), so does the process.
        conn.on_hangup = lambda: self._signal_pid(t.pid, signal.SIGKILL)
        conn.send({"ok": True, "pid": t.pid})

    def _exec_done(self, holder: dict[str, int], conn: Conn, ws: int) -> None:
        self.execs.pop(holder.get("pid", -1), None)
        conn.on_hangup = None
        conn.send({"exit": ws})
        conn.close()

    def _op_ps(self, conn: Conn, req: dict[str, Any]) -> None:
        assert self.sb is not None
        self._reply(conn, pids=self.sb.pids())

    def _op_pause(self, conn: Conn, req: dict[str, Any]) -> None:
        assert self.sb is not None
        if not self.started:
            conn.reply_error("container not running")
            return
        if not self.paused:
            self.sb.pause()
            self.paused = True
            self.record(status="paused")
        self._reply(conn)

    def _op_resume(self, conn: Conn, req: dict[str, Any]) -> None:
        assert self.sb is not None
        if not self.paused:
            conn.reply_error("container not paused")
            return
        self.sb.resume()
        self.paused = False
        self.record(status="running")
        self._reply(conn)

    def _op_stats(self, conn: Conn, req: dict[str, Any]) -> None:
        assert self.sb is not None
        self._reply(conn, stats=process_stats(os.getpid(), len(self.sb.pids())))

    def _op_state(self, conn: Conn, req: dict[str, Any]) -> None:
        status = "paused" if self.paused else "running" if self.started else "created"
        self._reply(conn, status=status)


def process_stats(pid: int, npids: int) -> dict[str, Any]:
    """runc's `events --stats` data (types.Stats) for the sandbox process: the VM's
    CPU time and memory are the container's."""
    tick = os.sysconf("SC_CLK_TCK")
    user = system = 0
    rss = peak = 0
    with contextlib.suppress(OSError, IndexError, ValueError):
        with open(f"/proc/{pid}/stat", "rb") as f:
            rest = f.read().rsplit(b")", 1)[1].split()
        user, system = int(rest[11]), int(rest[12])
    with contextlib.suppress(OSError, ValueError):
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = int(line.split()[1]) * 1024
                elif line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
    ns = 1_000_000_000 // tick
    return {
        "cpu": {"usage": {"total": (user + system) * ns, "kernel": system * ns,
                          "user": user * ns, "percpu": []},
                "throttling": {}},
        "memory": {"usage": {"usage": rss, "max": peak, "limit": 0, "failcnt": 0},
                   "swap": {}, "kernel": {}, "kernelTCP": {}, "raw": {}},
        "pids": {"current": npids, "limit": 0},
        "blkio": {},
        "hugetlb": {},
        "intel_rdt": {},
        "network_interfaces": None,
    }
