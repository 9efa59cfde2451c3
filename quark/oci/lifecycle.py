"""runc's lifecycle commands: create, start, run, state, kill, delete, pause, resume.

The sandbox process (quark/sandbox/service.py) is the container: `create` forks it
and waits, through a pipe, for its one-line verdict; every later command reads
state.json and talks to the sandbox over its control socket. Error texts are
runc's where clients match on them ("container not running", "does not exist").
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import cgroups
from . import hooks as oci_hooks
from .errors import OciError
from .spec import SandboxSpec, load_bundle
from .state import NotExistError, State, StateDir, pid_start_time

if TYPE_CHECKING:
    from .console import Pty

def parse_signal(text: str) -> int:
    """runc's kill argument: "TERM", "SIGTERM", "15" (case-insensitive names)."""
    t = text.strip()
    if t.isdigit():
        n = int(t)
        if 0 < n < 65:
            return n
    else:
        name = t.upper()
        name = name if name.startswith("SIG") else "SIG" + name
        with contextlib.suppress(AttributeError):
            return int(getattr(signal.Signals, name))
        if name.startswith("SIGRTMIN") or name.startswith("SIGRTMAX"):
            base = signal.SIGRTMIN if name.startswith("SIGRTMIN") else signal.SIGRTMAX
            off = name[8:]
            with contextlib.suppress(ValueError):
                return int(base) + (int(off) if off else 0)
    raise OciError(f"unknown signal {text!r}")


def _control(sdir: StateDir, req: dict[str, Any], timeout: float = 30) -> dict[str, Any]:
    from quark.sandbox.control import ControlError, request
    try:
        return request(sdir.control_path, req, timeout=timeout)
    except ControlError as e:
        raise OciError(str(e)) from e


def _hooks_of(st: State) -> dict[str, list[oci_hooks.Hook]]:
    """The hooks of the container's config.json (read again: the state keeps ids only)."""
    import json
    try:
        with open(os.path.join(st.bundle, "config.json"), encoding="utf-8") as f:
            return oci_hooks.parse_hooks(json.load(f))
    except (OSError, ValueError, OciError):
        return {}


def _log_warning(msg: str) -> None:
    from quark.log import get_logger
    get_logger("oci").warning(msg)


def _warn(msg: str) -> None:
    """A warning the user of this command sees (and the log keeps)."""
    _log_warning(msg)
    print(f"quark: warning: {msg}", file=sys.stderr, flush=True)


def _new_state(spec: SandboxSpec) -> State:
    return State(id=spec.id, bundle=str(spec.bundle or ""), rootfs=str(spec.rootfs),
                 annotations=dict(spec.annotations), network_plugins=spec.wire_network)


def _sandbox(spec: SandboxSpec, cfg: Any, sdir: StateDir, systemd_cgroup: bool) -> Any:
    """In the sandbox process: join the cgroup and make the service (not built yet)."""
    from quark.sandbox.service import ContainerService

    hooks = oci_hooks.parse_hooks(spec.raw)
    path = (spec.raw.get("linux") or {}).get("cgroupsPath")
    if isinstance(path, str) and path:
        dirs, warnings = cgroups.join(cgroups.resolve(path, systemd_cgroup), os.getpid())
        for w in warnings:
            _log_warning(w)
        sdir.update(cgroup_dirs=dirs)

    def record(**fields: Any) -> None:
        if "pid" in fields:
            fields["pid_start"] = pid_start_time(fields["pid"])
        sdir.update(**fields)

    def run_hooks(kind: str) -> None:
        oci_hooks.run_hooks(kind, hooks, sdir.load().hook_state(), warn=_warn)

    return ContainerService(spec, cfg, sdir.control_path, record, run_hooks)


def _close_inherited(keep: set[int]) -> None:
    """Close what the caller leaked to us (conmon's and the shim's pipes would never
    see EOF otherwise), keeping stdio, `keep` and --preserve-fds."""
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2 and fd not in keep:
            with contextlib.suppress(OSError):
                os.close(fd)


def create(spec: SandboxSpec, cfg: Any, root: str, *, pid_file: str | None,
           console_socket: str | None, preserve_fds: int = 0,
           systemd_cgroup: bool = False) -> int:
    """Fork the sandbox process and return when it is ready (or raise, leaving
    nothing behind)."""
    sdir = StateDir(root, spec.id)
    if spec.terminal and not console_socket:
        raise OciError("process.terminal is true but --console-socket was not given")
    oci_hooks.parse_hooks(spec.raw)      # a bad hooks section fails before any state
    sdir.make()
    pty: Pty | None = None
    child = 0
    try:
        sdir.save(_new_state(spec))
        if spec.terminal:
            assert console_socket is not None
            from .console import Pty, send_console
            size = (spec.raw.get("process") or {}).get("consoleSize") or {}
            pty = Pty(int(size.get("width") or 0), int(size.get("height") or 0))
            send_console(console_socket, pty)
            pty.close_master()
        r, w = os.pipe()
        child = os.fork()
        if child == 0:
            os.close(r)
            _sandbox_child(spec, cfg, sdir, w, pty, pid_file, preserve_fds, systemd_cgroup)
        os.close(w)
        verdict = b""
        while chunk := os.read(r, 4096):
            verdict += chunk
        os.close(r)
        if verdict == b"ok":
            return 0
        os.waitpid(child, 0)
        child = 0
        raise OciError(verdict.decode(errors="replace").removeprefix("error: ")
                       or "the sandbox process died during create")
    except BaseException:
        if child:
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
                os.waitpid(child, 0)
        with contextlib.suppress(OciError):
            cgroups.remove(sdir.load().cgroup_dirs)
        sdir.remove()
        raise
    finally:
        if pty is not None:
            pty.close()


def _sandbox_child(spec: SandboxSpec, cfg: Any, sdir: StateDir, w: int, pty: Pty | None,
                   pid_file: str | None, preserve_fds: int, systemd_cgroup: bool) -> None:
    """The forked sandbox process; never returns."""
    status = 1
    try:
        # First of all: `state` must see a live pid while we are "creating".
        sdir.update(pid=os.getpid(), pid_start=pid_start_time(os.getpid()))
        from quark import log as qlog
        keep = {w, *range(3, 3 + preserve_fds)}
        if qlog._file is not None:
            keep.add(qlog._file.fileno())   # our own log, opened before the fork
        if pty is not None:
            keep.add(pty.slave)
        _close_inherited(keep)
        for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(s, signal.SIG_DFL)
        if pty is not None:
            from .console import make_controlling
            make_controlling(pty.slave)
            pty.slave = -1
        else:
            os.setsid()     # off the caller's terminal: its ^C is not for us
        from quark.log import setup_logging
        setup_logging(cfg.log)
        svc = _sandbox(spec, cfg, sdir, systemd_cgroup)
        svc.preserve_fds = preserve_fds
        svc.build(pid_file)
    except BaseException as e:  # noqa: BLE001 - reported to `create`, which prints it
        with contextlib.suppress(OSError):
            os.write(w, ("error: " + (" ".join(str(e).split()) or type(e).__name__)).encode())
        os._exit(1)
    try:
        os.write(w, b"ok")
        os.close(w)
        status = svc.run(autostart=False)
    except BaseException as e:  # noqa: BLE001
        _log_warning(f"sandbox failed: {type(e).__name__}: {e}")
        status = 255
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(status)


def start(root: str, container_id: str) -> int:
    sdir = StateDir(root, container_id)
    st = sdir.load()
    status = st.live_status()
    if status == "stopped":
        raise OciError("cannot start a container that has stopped")
    if status != "created":
        raise OciError(f"cannot start an already {status} container")
    _control(sdir, {"op": "start"})
    oci_hooks.run_hooks("poststart", _hooks_of(st), sdir.load().hook_state(), warn=_warn)
    return 0


def run(spec: SandboxSpec, cfg: Any, root: str, *, pid_file: str | None,
        console_socket: str | None, detach: bool, keep: bool = False,
        preserve_fds: int = 0, systemd_cgroup: bool = False) -> int:
    """create + start; in the foreground this process is the sandbox and returns
    the container's status."""
    if detach:
        create(spec, cfg, root, pid_file=pid_file, console_socket=console_socket,
               preserve_fds=preserve_fds, systemd_cgroup=systemd_cgroup)
        try:
            return start(root, spec.id)
        except BaseException:
            delete(root, spec.id, force=True)
            raise
    sdir = StateDir(root, spec.id)
    oci_hooks.parse_hooks(spec.raw)
    sdir.make()
    svc = None
    try:
        sdir.save(_new_state(spec))
        if spec.terminal and console_socket:
            from .console import Pty, send_console
            pty = Pty()
            send_console(console_socket, pty)
            pty.close_master()
            for fd in (0, 1, 2):
                os.dup2(pty.slave, fd)
            pty.close()
        from quark.log import phase, setup_logging
        setup_logging(cfg.log)
        phase("state")
        svc = _sandbox(spec, cfg, sdir, systemd_cgroup)
        try:
            svc.build(pid_file)
        except Exception as e:
            raise OciError(" ".join(str(e).split())) from e
        status: int = svc.run(autostart=True)
        return status
    finally:
        if not keep:
            sb = getattr(svc, "sb", None)
            _cleanup(sdir, sdir.load() if sdir.exists() else None,
                     getattr(sb, "plugins", None))
        from quark.log import log_phases, phase
        phase("cleanup")
        log_phases("run phases (ms)")


def state(root: str, container_id: str) -> dict[str, Any]:
    return StateDir(root, container_id).load().oci()


def kill(root: str, container_id: str, sig: int, all_processes: bool = False) -> None:
    sdir = StateDir(root, container_id)
    st = sdir.load()
    if st.live_status() == "stopped":
        raise OciError("container not running")
    try:
        _control(sdir, {"op": "kill", "signal": sig, "all": all_processes})
    except OciError:
        if sig != signal.SIGKILL or not st.alive():
            raise
        os.kill(st.pid, signal.SIGKILL)   # a wedged sandbox still dies of SIGKILL


def _wait_gone(st: State, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while st.alive() and time.monotonic() < deadline:
        time.sleep(0.02)


def _network_teardown(container_id: str, plugins: Any = None) -> None:
    """The network plugins release what outlives the sandbox (leases, NAT rules,
    links): also after a crash. Never fails the delete. ``plugins``: the manager
    the sandbox already made, if this is its process."""
    try:
        if plugins is None:
            from quark.plugins.manager import make_manager
            plugins = make_manager()
        plugins.network_teardown(None, None, container_id)
    except Exception as e:  # noqa: BLE001
        _log_warning(f"network teardown of {container_id}: {e}")


def _cleanup(sdir: StateDir, st: State | None, plugins: Any = None) -> None:
    if st is None or st.network_plugins:
        _network_teardown(sdir.id, plugins)     # loading the plugins: ~20 ms
    if st is not None:
        oci_hooks.run_hooks("poststop", _hooks_of(st), {**st.hook_state(), "status": "stopped"},
                            warn=_warn)
        cgroups.remove(st.cgroup_dirs)
    sdir.remove()


def delete(root: str, container_id: str, force: bool = False) -> None:
    sdir = StateDir(root, container_id)
    try:
        st = sdir.load()
    except NotExistError:
        sdir.remove()       # a create that died before writing state.json
        _network_teardown(container_id)
        if force:
            return
        raise
    status = st.live_status()
    if status in ("running", "paused") and not force:
        raise OciError(f"cannot delete container {container_id} that is not stopped: "
                       f"{status}")
    if status != "stopped":
        with contextlib.suppress(OSError):
            os.kill(st.pid, signal.SIGKILL)
        _wait_gone(st)
    _cleanup(sdir, st)


def pause(root: str, container_id: str, resume: bool = False) -> None:
    sdir = StateDir(root, container_id)
    status = sdir.load().live_status()
    if status == "stopped":
        raise OciError("container not running")
    if resume and status != "paused":
        raise OciError("container not paused")
    if not resume and status not in ("running", "paused"):
        raise OciError("container not running")
    _control(sdir, {"op": "resume" if resume else "pause"})


def container_pids(root: str, container_id: str) -> tuple[State, list[int]]:
    """The host pids of the container: the sandbox process alone (the guest's
    processes are not host processes), and the guest pids from the sandbox."""
    sdir = StateDir(root, container_id)
    st = sdir.load()
    if st.live_status() == "stopped":
        return st, []
    return st, list(_control(sdir, {"op": "ps"}).get("pids") or [])


def stats(root: str, container_id: str) -> dict[str, Any]:
    sdir = StateDir(root, container_id)
    if sdir.load().live_status() == "stopped":
        raise OciError("container not running")
    data: dict[str, Any] = _control(sdir, {"op": "stats"})["stats"]
    return data


def update(root: str, container_id: str, resources: dict[str, Any]) -> None:
    """Store the new resources; the memory and pids limits reach the cgroup."""
    import json
    sdir = StateDir(root, container_id)
    st = sdir.load()
    (sdir.path / "resources.json").write_text(json.dumps(resources))
    mem = ((resources.get("memory") or {}).get("limit"))
    pids = ((resources.get("pids") or {}).get("limit"))
    for d in map(Path, st.cgroup_dirs):
        for fname, value in (("memory.limit_in_bytes", mem), ("memory.max", mem),
                             ("pids.max", pids)):
            if value is not None and (d / fname).exists():
                text = "max" if value < 0 and fname != "memory.limit_in_bytes" else str(value)
                try:
                    (d / fname).write_text(text)
                except OSError as e:
                    _log_warning(f"update {d / fname}: {e.strerror}")
