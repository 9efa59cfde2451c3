"""`quark exec`: run another process in a running container.

The process runs in the guest; on the host, a *holder* process stands for it: it
sends the request and the stdio fds to the sandbox, forwards the signals it gets to
the guest process, and exits with the guest process's status when it is gone. In the
foreground the holder is this process; with --detach it is a forked child whose pid
goes to --pid-file (containerd's shim and conmon wait for it as a subreaper would).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
from typing import Any

from .console import Pty, send_console
from .errors import OciError
from .state import StateDir

# What a holder passes on to the guest process (SIGKILL/SIGSTOP cannot be caught).
FORWARDED = tuple(s for s in signal.Signals
                  if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD,
                               signal.SIGPIPE, signal.SIGTTIN, signal.SIGTTOU, signal.SIGTSTP,
                               signal.SIGURG, signal.SIGWINCH))


def _lookup_user(rootfs: str, user: str) -> tuple[int, int]:
    """`uid[:gid]` or `name[:group]` (names from the rootfs's /etc/passwd, /etc/group)."""
    name, _, group = user.partition(":")

    def find(path: str, key: str) -> tuple[int, int] | None:
        with contextlib.suppress(OSError), open(os.path.join(rootfs, path)) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) >= 4 and parts[0] == key:
                    return int(parts[2]), int(parts[3])
        return None

    if name.isdigit():
        uid, gid = int(name), 0
    else:
        found = find("etc/passwd", name)
        if found is None:
            raise OciError(f"unable to find user {name}: no matching entries in passwd file")
        uid, gid = found
    if group:
        if group.isdigit():
            gid = int(group)
        else:
            g = find("etc/group", group)
            if g is None:
                raise OciError(f"unable to find group {group}: no matching entries in group file")
            gid = g[0]
    return uid, gid


def build_process(config: dict[str, Any], rootfs: str, *, process_file: str | None,
                  args: list[str], env: list[str], cwd: str | None, user: str | None,
                  tty: bool, additional_gids: list[int]) -> dict[str, Any]:
    """The OCI process object to run: --process FILE as is, or config.json's process
    with the command line's changes (runc's rules)."""
    if process_file:
        try:
            with open(process_file, encoding="utf-8") as f:
                proc: dict[str, Any] = json.load(f)
        except (OSError, ValueError) as e:
            raise OciError(f"reading --process {process_file}: {e}") from e
        if not isinstance(proc, dict) or not proc.get("args"):
            raise OciError(f"--process {process_file}: args must not be empty")
        return proc
    if not args:
        raise OciError("exec: no command given (quark exec ID CMD [ARG...])")
    base = dict(config.get("process") or {})
    proc = {"args": args, "env": list(base.get("env") or []) + env,
            "cwd": cwd or base.get("cwd") or "/", "terminal": tty,
            "user": dict(base.get("user") or {})}
    if user:
        uid, gid = _lookup_user(rootfs, user)
        proc["user"] = {"uid": uid, "gid": gid}
    if additional_gids:
        proc["user"]["additionalGids"] = additional_gids
    return proc


def exec_process(root: str, container_id: str, proc: dict[str, Any], *, detach: bool,
                 pid_file: str | None, console_socket: str | None) -> int:
    from quark.sandbox.control import ControlError, Reader, connect, send_request

    sdir = StateDir(root, container_id)
    st = sdir.load()
    status = st.live_status()
    if status in ("stopped", "paused", "created", "creating"):
        raise OciError(f"cannot exec in a {status} state: container not running")
    user = proc.get("user") or {}
    req = {"op": "exec", "args": list(proc["args"]), "env": list(proc.get("env") or []),
           "cwd": proc.get("cwd") or "/", "uid": int(user.get("uid", 0)),
           "gid": int(user.get("gid", 0)), "groups": list(user.get("additionalGids") or []),
           "umask": user.get("umask"), "stdio": [0, 1, 2]}
    fds = [0, 1, 2]
    pty: Pty | None = None
    if proc.get("terminal"):
        if console_socket:
            size = proc.get("consoleSize") or {}
            pty = Pty(int(size.get("width") or 0), int(size.get("height") or 0))
            send_console(console_socket, pty)
            pty.close_master()
            fds, req["stdio"] = [pty.slave], [0, 0, 0]
        elif detach:
            raise OciError("exec: terminal is true but --console-socket was not given")
    try:
        s = connect(sdir.control_path, timeout=None)
        send_request(s, req, fds)
        reader = Reader(s)
        reply = reader.next()
    except ControlError as e:
        raise OciError(str(e)) from e
    finally:
        if pty is not None:
            pty.close()
    if reply is None:
        raise OciError("the sandbox closed the connection")
    if not reply.get("ok"):
        raise OciError(str(reply.get("error")))
    guest_pid = int(reply["pid"])
    if detach:
        holder = os.fork()
        if holder:
            s.close()
            _write_pid(pid_file, holder)
            return 0
        os.setsid()
    else:
        _write_pid(pid_file, os.getpid())
    os._exit(_hold(s, reader, sdir, guest_pid))


def _write_pid(pid_file: str | None, pid: int) -> None:
    if pid_file:
        tmp = f"{pid_file}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, pid_file)


def _hold(s: Any, reader: Any, sdir: StateDir, guest_pid: int) -> int:
    """Stand for guest process `guest_pid` until it exits; returns its status."""
    from quark.sandbox.control import ControlError, request
    from quark.sandbox.process import shell_status

    # The guest holds its own copies of stdio now: ours must not keep a pipe open
    # after the guest closed it (clients wait for EOF).
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.close(null)

    def forward(sig: int, _frame: Any) -> None:
        with contextlib.suppress(ControlError, OSError):
            request(sdir.control_path, {"op": "kill", "signal": sig, "pid": guest_pid},
                    timeout=5)

    for sig in FORWARDED:
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, forward)
    try:
        while True:
            msg = reader.next()
            if msg is None:
                return 128 + signal.SIGKILL     # the sandbox is gone, and the guest with it
            if "exit" in msg:
                return shell_status(int(msg["exit"]))
    except (ControlError, ValueError):
        return 255
