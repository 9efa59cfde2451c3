"""The sandbox process: one KVM machine, one application kernel, one container.

``run_sandbox`` builds the machine and the kernel from a checked spec, starts the
container's process as pid 1, and runs the event loop until that process exits.
The loop owns what is not a vCPU's: host signals to forward, the init-exit report
(an eventfd written by the vCPU thread that ran init's exit), and later the control
socket. Its exit status is the container's, as a shell shows it (128+n on a signal).
"""

from __future__ import annotations

import asyncio
import logging
import os
import posixpath
import signal
from typing import Any

from quark.core import platform
from quark.core.vm import Machine
from quark.kernel.abi import linux as L
from quark.kernel.creds import Creds
from quark.kernel.errors import LinuxError
from quark.kernel.kernel import Kernel
from quark.kernel.rlimits import Rlimits
from quark.kernel.signals import SigInfo
from quark.kernel.task import Task, ThreadGroup
from quark.kernel.task_exec import do_execve
from quark.kernel.task_signals import send_to_group
from quark.kernel.taskrun import drive, install_kick_handler
from quark.kernel.vfs.fdtable import FdTable
from quark.kernel.fs.host.file import HostStreamFile

log = logging.getLogger("quark.sandbox")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxError(Exception):
    """The container could not be started; the message is one line for the user."""


def shell_status(wait_status: int) -> int:
    """What ``$?`` shows for a Linux wait status."""
    if wait_status & 0x7F:
        return 128 + (wait_status & 0x7F)
    return (wait_status >> 8) & 0xFF


class Sandbox:
    def __init__(self, spec: Any, config: Any = None) -> None:
        self.spec = spec
        self.config = config
        kcfg = getattr(config, "kernel", None)
        mem_mib = getattr(kcfg, "memory_mib", 1024)
        pcfg = getattr(config, "platform", None)
        try:
            platform.require_runnable(getattr(pcfg, "kind", "auto"))
        except platform.PlatformError as e:
            raise SandboxError(str(e)) from e
        try:
            self.machine = Machine(mem_mib << 20)
        except OSError as e:
            raise SandboxError(f"starting the virtual machine: {e.strerror or e}") from e
        self.kernel = Kernel(self.machine, None, spec.hostname or "quark")
        if getattr(kcfg, "strace", False):
            from quark.kernel.strace import make_tracer
            self.kernel.strace = make_tracer()
        self._build_vfs()
        self.init: Task | None = None

    def _build_vfs(self) -> None:
        from quark.kernel.vfs.mount import VFS
        spec = self.spec
        tty = 0 if spec.terminal and os.isatty(0) else None
        try:
            vfs = VFS(str(spec.rootfs), spec.readonly, kernel=self.kernel, tty_fd=tty)
        except (OSError, LinuxError) as e:
            raise SandboxError(f"opening rootfs {spec.rootfs}: {_err(e)}") from e
        for m in spec.mounts:
            try:
                vfs.mount(m.destination, m.type or "bind", m.source, tuple(m.options))
            except (OSError, LinuxError) as e:
                raise SandboxError(f"mounting {m.type or 'bind'} on {m.destination}: {_err(e)}") from e
        self.kernel.vfs = vfs

    # ---- pid 1

    def create_init(self) -> Task:
        spec = self.spec
        k = self.kernel
        creds = Creds.for_user(spec.uid, spec.gid, tuple(spec.additional_gids))
        try:
            fs = k.vfs.new_fs_context(spec.cwd or "/")
        except LinuxError as e:
            raise SandboxError(f"cwd {spec.cwd}: {_err(e)}") from e
        if spec.umask is not None:
            fs.umask = spec.umask
        fds = FdTable()
        for fd in (0, 1, 2):
            try:
                fds.install_at(fd, HostStreamFile.from_host_fd(fd))
            except (OSError, LinuxError):
                pass        # a closed stdio fd stays closed in the container too
        from quark.kernel.mm.address_space import AddressSpace
        pid = k.alloc_pid()
        tg = ThreadGroup(k, pid, None)
        tg.rlimits = Rlimits.from_spec(spec.rlimits)
        k.groups[pid] = tg
        k.init_tg = tg
        t = Task(k, pid, tg, AddressSpace(self.machine), fds, fs, creds)
        tg.threads.append(t)
        env = [e.encode() for e in spec.env]
        argv = [a.encode() for a in spec.args]
        path = self._find_executable(t, spec.args[0], spec.env)
        coro = do_execve(t, L.AT_FDCWD, path, argv, env, 0)
        with k.lock:
            rc = drive(t, coro)
        if rc < 0:
            raise SandboxError(self._exec_error(spec.args[0], -rc))
        cr3, fs_base, regs = t.enter
        t.enter = None
        t.start_regs = regs
        t.fs_base = fs_base
        self.init = t
        return t

    def _find_executable(self, t: Task, name: str, env: Any) -> str:
        """runc's lookup: a name without '/' is searched in the container's PATH."""
        if "/" in name:
            return name
        path = next((e[5:] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
        from quark.kernel.vfs.at import lookup
        for d in path.split(":"):
            cand = posixpath.join(d or ".", name)
            try:
                loc = lookup(t, L.AT_FDCWD, cand, 0)
            except LinuxError:
                continue
            st = loc.node.stat() if hasattr(loc, "node") else None
            if st is not None and st.mode & L.S_IFMT == L.S_IFREG and st.mode & 0o111:
                return cand
        raise SandboxError(f'exec: "{name}": executable file not found in $PATH')

    @staticmethod
    def _exec_error(name: str, errno: int) -> str:
        if errno == L.ENOENT:
            return f"exec: {name}: no such file or directory"
        if errno == L.EACCES:
            return f"exec: {name}: permission denied"
        if errno == L.ENOEXEC:
            return f"exec: {name}: exec format error"
        return f"exec: {name}: {os.strerror(errno).lower()}"

    # ---- running

    def run(self) -> int:
        """Start init and serve until it exits; returns the wait status."""
        t = self.init or self.create_init()
        install_kick_handler()
        loop = _new_loop()
        try:
            return loop.run_until_complete(self._serve(t))
        finally:
            loop.close()
            self.close()

    async def _serve(self, t: Task) -> int:
        loop = asyncio.get_running_loop()
        k = self.kernel
        done: asyncio.Future[int] = loop.create_future()
        efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)

        def on_exit(status: int) -> None:       # vCPU thread, kernel lock held
            os.eventfd_write(efd, 1)

        def readable() -> None:
            try:
                os.eventfd_read(efd)
            except BlockingIOError:
                return
            if not done.done() and k.exit_status is not None:
                done.set_result(k.exit_status)

        k.on_init_exit = on_exit
        loop.add_reader(efd, readable)
        for s in FORWARDED:
            loop.add_signal_handler(s, self.forward, int(s))
        with k.lock:
            k.start(t)
        try:
            status = await done
        finally:
            loop.remove_reader(efd)
            for s in FORWARDED:
                loop.remove_signal_handler(s)
            os.close(efd)
        await loop.run_in_executor(None, self._join_tasks)
        return status

    def forward(self, sig: int) -> None:
        """A host signal for the container goes to its init. Like a pid namespace's
        init, it ignores signals it has no handler for, except SIGKILL and SIGSTOP."""
        k = self.kernel
        with k.lock:
            tg = k.init_tg
            if tg is None or tg.zombie:
                return
            act = tg.sighand.actions[sig]
            if act.handler == 0 and sig not in (L.SIGKILL, L.SIGSTOP):
                return
            send_to_group(tg, SigInfo(sig, 0, pid=0, uid=0))

    def kill_all(self) -> None:
        k = self.kernel
        with k.lock:
            from quark.kernel.task_signals import group_exit
            for tg in list(k.groups.values()):
                group_exit(tg, L.SIGKILL)

    def _join_tasks(self) -> None:
        for th in list(self.kernel.threads):
            th.join(timeout=2.0)

    def close(self) -> None:
        if any(th.is_alive() for th in self.kernel.threads):
            return      # a stuck vCPU thread still uses guest memory: leave it mapped
        try:
            self.kernel.vfs.release()
        except Exception:  # noqa: BLE001 - teardown must not mask the exit status
            log.debug("vfs release failed", exc_info=True)
        self.machine.close()


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def _err(e: BaseException) -> str:
    if isinstance(e, LinuxError):
        return os.strerror(e.errno).lower()
    if isinstance(e, OSError):
        return (e.strerror or str(e)).lower()
    return str(e)


def run_sandbox(spec: Any, *, pid_file: str | None = None, config: Any = None) -> int:
    """Run a container to completion; returns its exit status as a shell shows it."""
    from quark.oci.errors import OciError
    try:
        sb = Sandbox(spec, config)
        sb.create_init()
    except SandboxError as e:
        raise OciError(str(e)) from e
    if pid_file:
        tmp = f"{pid_file}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(str(os.getpid()))
        os.rename(tmp, pid_file)
    return shell_status(sb.run())
