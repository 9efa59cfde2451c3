"""The sandbox process: one KVM machine, one application kernel, one container.

``run_sandbox`` builds the machine and the kernel from a checked spec, starts the
container's process as pid 1, and runs the event loop until that process exits.
The loop owns what is not a vCPU's: host signals to forward, the init-exit report
(an eventfd written by the vCPU thread that ran init's exit), and later the control
socket. Its exit status is the container's, as a shell shows it (128+n on a signal).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import posixpath
import signal
import sys
import threading
from typing import Any

from quark.core import platform
from quark.core.guest.layout import FIXED_END
from quark.core.vm import Machine, take_prepared
from quark.kernel.abi import linux as L
from quark.kernel.creds import Creds
from quark.kernel.errors import LinuxError
from quark.kernel.fs.host.file import HostStreamFile
from quark.kernel.kernel import Kernel
from quark.kernel.rlimits import Rlimits
from quark.kernel.signals import SigInfo
from quark.kernel.task import Task, ThreadGroup
from quark.kernel.task_exec import do_execve
from quark.kernel.task_signals import send_to_group
from quark.kernel.taskrun import drive, install_kick_handler
from quark.kernel.vfs.fdtable import FdTable

log = logging.getLogger("quark.sandbox")

FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT,
             signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT)
# Bytes of guest frames backed with host pages while the kernel is built: about what
# busybox's echo takes (its text and rodata, read whole, are 1.9 MiB).
TOUCH_AHEAD = 2 << 20
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
        self._touch: threading.Thread | None = None     # see _build
        # Plugins, then the network namespace: first of all, before any thread exists
        # (setns/unshare move only the calling thread; see netns.py).
        from quark.log import phase
        from quark.plugins.manager import make_manager

        from .netns import NetnsError
        from .netns import enter as enter_netns
        self.plugins = make_manager(config)
        phase("plugins")
        try:
            self.network = enter_netns(spec, self.plugins)
        except NetnsError as e:
            raise SandboxError(str(e)) from e
        phase("network")
        try:
            self._build()
            # Plugins may still be wiring the network (in a helper process) while
            # the VM and kernel were built: the container starts only once it is up.
            self.network.finish()
        except NetnsError as e:
            raise SandboxError(str(e)) from e
        except BaseException:
            self.network.settle()
            raise
        phase("network_ready")
        # Its worker's part is done. Only a sandbox that has a worker (a template's
        # run, or a foreground run that forked one) imports the module.
        worker = sys.modules.get("quark.template.worker")
        if worker is not None:
            worker.release()
        self.poller = None
        if self.qcall:
            from quark.core.qcall import Poller
            from quark.kernel.taskrun import qcall_idle, qcall_serve_all
            kernel = self.kernel
            self.poller = Poller(self.machine, lambda: qcall_serve_all(kernel),
                                 idle=lambda: qcall_idle(kernel),
                                 pending=kernel.write_behind.pending)
            kernel.poke_poller = self.poller.poke
            self.poller.start()

    def _build(self) -> None:
        """The VM, the kernel, its filesystems and the QCall poller."""
        from quark.log import phase
        spec, config = self.spec, self.config
        kcfg = getattr(config, "kernel", None)
        mem_mib = getattr(kcfg, "memory_mib", 1024)
        pcfg = getattr(config, "platform", None)
        try:
            platform.require_runnable(getattr(pcfg, "kind", "auto"))
        except platform.PlatformError as e:
            raise SandboxError(str(e)) from e
        path = os.environ.get("QUARK_SYSCALL_PATH") or getattr(kcfg, "syscall_path", "qcall")
        self.qcall = path == "qcall"
        spin = getattr(kcfg, "qcall_spin", 8000)
        try:
            self.machine = (take_prepared(mem_mib << 20, self.qcall, spin)
                            or Machine(mem_mib << 20, qcall=self.qcall, qcall_spin=spin))
        except OSError as e:
            raise SandboxError(f"starting the virtual machine: {e.strerror or e}") from e
        # The first frames a program takes (text, tables, stack), backed with host
        # pages by another thread while this one builds the kernel: madvise runs
        # without the GIL, and a first touch costs ~5 µs a page here.
        self._touch = threading.Thread(target=self.machine.mem.populate_quietly,
                                       args=(FIXED_END, TOUCH_AHEAD), daemon=True,
                                       name="touch-ahead")
        self._touch.start()
        phase("vm")
        self.kernel = Kernel(self.machine, None, spec.hostname or "quark")
        # None unless a plugin implements quark_syscall_enter/exit (--strace does).
        self.kernel.syscall_observer = self.plugins.syscall_observer()
        self.kernel.io_uring_mode = getattr(kcfg, "io_uring", "off")  # made on first use
        behind = os.environ.get("QUARK_WRITE_BEHIND") or getattr(kcfg, "write_behind", "rootfs")
        # Only QCall's fast path gathers runs; the poller's idle pass flushes them.
        self.kernel.write_behind.enabled = self.qcall and behind == "rootfs"
        gate = os.environ.get("QUARK_GATE_CALLS") or getattr(kcfg, "gate_calls", "on")
        self.kernel.gate_calls = gate == "on"
        self._build_vfs()
        self.kernel.start_time()
        self.init: Task | None = None
        phase("kernel")

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
                # A storage plugin (9P, virtiofs ...) may serve the mount; else the
                # kernel's own filesystems do.
                provided = self.plugins.hook.quark_storage_mount(spec_mount=m, vfs=vfs)
                vfs.mount(m.destination, m.type or "bind", m.source, tuple(m.options),
                          provided=provided)
            except (OSError, LinuxError) as e:
                raise SandboxError(f"mounting {m.type or 'bind'} on {m.destination}: {_err(e)}") from e
        self.kernel.vfs = vfs

    # ---- processes

    def create_init(self, extra_fds: int = 0) -> Task:
        """Prepare pid 1 from the spec (exec'd, not yet running). ``extra_fds``:
        host fds 3..3+N-1 become the same fds of the container (--preserve-fds)."""
        spec = self.spec
        stdio = (0, 1, 2, *range(3, 3 + extra_fds))
        t = self.spawn(spec.args, spec.env, spec.cwd or "/", spec.uid, spec.gid,
                       tuple(spec.additional_gids), stdio, umask=spec.umask,
                       rlimits=spec.rlimits, is_init=True)
        self.init = t
        try:
            self.plugins.hook.quark_sandbox_created(sandbox=self)
        except Exception as e:
            raise SandboxError(f"plugin (quark_sandbox_created): {e}") from e
        from quark.log import phase
        phase("init_exec")
        return t

    def spawn(self, args: Any, env: Any, cwd: str, uid: int, gid: int, groups: tuple[int, ...],
              stdio: tuple[int | None, ...], *, umask: int | None = None,
              rlimits: Any = (), is_init: bool = False, on_exit: Any = None) -> Task:
        """Make a process in the container running ``args`` with host fds ``stdio`` as
        its 0, 1, 2 (dup'ed; None leaves the fd closed). Init is returned unstarted;
        any other process (``exec``) starts at once with no parent in the container,
        and ``on_exit(wait_status)`` runs (kernel lock held) when it is gone."""
        k = self.kernel
        creds = Creds.for_user(uid, gid, groups)
        from quark.kernel.mm.address_space import AddressSpace
        with k.lock:
            try:
                fs = k.vfs.new_fs_context(cwd)
            except LinuxError as e:
                raise SandboxError(f"cwd {cwd}: {_err(e)}") from e
            if umask is not None:
                fs.umask = umask
            fds = FdTable()
            for fd, host in enumerate(stdio):
                if host is None:
                    continue
                try:
                    fds.install_at(fd, HostStreamFile.from_host_fd(host))
                except (OSError, LinuxError):
                    pass    # a closed stdio fd stays closed in the container too
            pid = k.alloc_pid()
            tg = ThreadGroup(k, pid, None)
            tg.rlimits = (Rlimits.from_spec(rlimits) if is_init or k.init_tg is None
                          else k.init_tg.rlimits.fork())
            tg.on_exit = on_exit
            if k.init_tg is not None:
                tg.sid = tg.pgid = pid
            t = Task(k, pid, tg, AddressSpace(self.machine), fds, fs, creds)
            tg.threads.append(t)
            k.groups[pid] = tg
            if is_init:
                k.init_tg = tg
            if not any(e.startswith("HOME=") for e in env):
                env = [*env, f"HOME={self._home_of(t, uid)}"]   # as runc does
            envb = [e.encode() for e in env]
            argv = [a.encode() for a in args]
            try:
                path = self._find_executable(t, args[0], env)
                rc = drive(t, do_execve(t, L.AT_FDCWD, path, argv, envb, 0))
                if rc < 0:
                    raise SandboxError(self._exec_error(args[0], -rc))
            except SandboxError:
                self._discard(t)
                raise
            _cr3, fs_base, regs = t.enter
            t.enter = None
            t.start_regs = regs
            t.fs_base = fs_base
            if not is_init:
                k.start(t)
        return t

    @staticmethod
    def _home_of(t: Task, uid: int) -> str:
        """The home directory of ``uid`` in the container's /etc/passwd, else "/"."""
        from quark.kernel.vfs.at import lookup
        try:
            loc = lookup(t, L.AT_FDCWD, "/etc/passwd", 0)
            f = loc.node.open(t, L.O_RDONLY, loc)
            buf = bytearray(1 << 16)
            n = f.read_at([memoryview(buf)], 0)
            f.incref()
            f.decref()
        except (LinuxError, OSError, AttributeError):
            return "/"
        for line in bytes(buf[:n]).decode("utf-8", "replace").splitlines():
            parts = line.split(":")
            if len(parts) >= 6 and parts[2] == str(uid) and parts[5]:
                return parts[5]
        return "/"

    def _discard(self, t: Task) -> None:
        k = self.kernel
        k.groups.pop(t.pid, None)
        if k.init_tg is t.tg:
            k.init_tg = None
        t.fds.close_all()
        t.mm.release()
        t.waker.close()

    def start_init(self) -> None:
        # What the sandbox built and imported lives as long as it does: out of the
        # collector's reach, a full collection no longer walks it while the
        # container runs (a served run's template did this for its imports).
        gc.freeze()
        started = False
        with self.kernel.lock:
            if self.init is not None and self.init.thread is None:
                self.kernel.start(self.init)
                started = True
        if started:
            self.plugins.notify("quark_sandbox_started", sandbox=self)

    def signal(self, sig: int, all_processes: bool = False) -> None:
        """Like ``kill``: to init (pid-namespace rules apply), or SIGKILL-style to
        every process with ``all_processes``."""
        if not all_processes:
            self.forward(sig)
            return
        k = self.kernel
        with k.lock:
            for tg in list(k.groups.values()):
                if not tg.zombie:
                    send_to_group(tg, SigInfo(sig, 0, pid=0, uid=0), outside=True)

    def pids(self) -> list[int]:
        """Container pids of live processes."""
        with self.kernel.lock:
            return sorted(g.pid for g in self.kernel.groups.values() if not g.zombie)

    def pause(self) -> None:
        with self.kernel.lock:
            self.kernel.freeze()

    def resume(self) -> None:
        with self.kernel.lock:
            self.kernel.thaw()

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
        if self.init is None:
            self.create_init()
        install_kick_handler()
        loop = _new_loop()
        try:
            return loop.run_until_complete(self.serve(autostart=True))
        finally:
            loop.close()
            self.close()

    async def serve(self, autostart: bool = True) -> int:
        """Run until init exits (started now, or later by ``start_init``); returns
        its wait status. Must run on the loop of the sandbox's main thread."""
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

        with k.lock:
            k.on_init_exit = on_exit
            # `run` starts init before serving: a short-lived one (echo) may be gone
            # already, and would never be reported.
            if k.exit_status is not None:
                os.eventfd_write(efd, 1)
        loop.add_reader(efd, readable)
        self.forward_signals(loop)
        if autostart:
            self.start_init()
        try:
            status = await done
        finally:
            loop.remove_reader(efd)
            for s in FORWARDED:
                loop.remove_signal_handler(s)
            os.close(efd)
        await loop.run_in_executor(None, self._join_tasks)
        self.plugins.notify("quark_sandbox_stopped", sandbox=self, wait_status=status)
        return status

    def forward_signals(self, loop: asyncio.AbstractEventLoop) -> None:
        """Forward the host's signals to init from now on (``serve`` removes the
        handlers when init is gone). Whoever starts init before serving calls this
        first: a signal sent once the container is up must not kill this process."""
        for s in FORWARDED:
            loop.add_signal_handler(s, self.forward, int(s))

    def forward(self, sig: int) -> None:
        """A host signal for the container goes to its init. Like a pid namespace's
        init, it ignores signals it has no handler for, except SIGKILL and SIGSTOP."""
        k = self.kernel
        with k.lock:
            tg = k.init_tg
            if tg is None or tg.zombie:
                return
            send_to_group(tg, SigInfo(sig, 0, pid=0, uid=0), outside=True)

    def kill_all(self) -> None:
        k = self.kernel
        with k.lock:
            from quark.kernel.task_signals import group_exit
            for tg in list(k.groups.values()):
                group_exit(tg, L.SIGKILL)

    def _join_tasks(self) -> None:
        k = self.kernel
        for th in list(k.threads):
            th.join(timeout=2.0)
        # Exiting tasks released their files, which flushed; a thread that did not
        # end in time may still hold one with a run pending. It may hold the lock
        # too: then its run stays unwritten rather than this exit hanging.
        if k.lock.acquire(timeout=2.0):
            try:
                k.write_behind.flush()
            finally:
                k.lock.release()
        elif k.write_behind.file is not None:
            log.warning("a stuck task holds the kernel lock: %d bytes to %s not written",
                        len(k.write_behind.buf), k.write_behind.file.path)

    def close(self) -> None:
        if any(th.is_alive() for th in self.kernel.threads):
            return      # a stuck vCPU thread still uses guest memory: leave it mapped
        if self._touch is not None:
            self._touch.join()
        if self.poller is not None:
            self.poller.stop()
        if self.kernel.timekeeper is not None:
            self.kernel.timekeeper.stop()
        try:
            self.kernel.vfs.release()
        except Exception:   # teardown must not mask the container's exit status
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
