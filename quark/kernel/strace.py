"""Decoding system calls for display, like strace: one line per call.

``format_call`` turns a call into ``openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC)
= 3``: arguments decoded by type (file descriptors as numbers, paths and short buffers
as quoted strings read from guest memory, flags as symbolic names for open, mmap,
mprotect, clone, socket ...), results as numbers, hex addresses or ``-1 ENOENT (No
such file or directory)``. A pointer that cannot be read shows as hex, as strace does.

This module only formats; the ``--strace`` printer is the built-in plugin in
``quark/plugins/builtin/strace.py``, fed by the ``quark_syscall_*`` hooks. It runs on
the vCPU thread with the kernel lock held, so it reads guest memory directly.
"""

from __future__ import annotations

import errno as _errno
import os
from typing import Any, Callable

from quark.kernel.abi import linux as L
from quark.kernel.syscalls import table as systable

_M64 = (1 << 64) - 1
STR_MAX = 32            # like strace -s 32


def _flag_names(prefix: str, names: list[str]) -> list[tuple[int, str]]:
    return [(getattr(L, n), n) for n in names if hasattr(L, n) and getattr(L, n)]


_OPEN_FLAGS = _flag_names("O_", [
    "O_CREAT", "O_EXCL", "O_NOCTTY", "O_TRUNC", "O_APPEND", "O_NONBLOCK", "O_DSYNC",
    "O_ASYNC", "O_DIRECT", "O_LARGEFILE", "O_DIRECTORY", "O_NOFOLLOW", "O_NOATIME",
    "O_CLOEXEC", "O_PATH"])
_MAP_FLAGS = _flag_names("MAP_", [
    "MAP_FIXED", "MAP_ANONYMOUS", "MAP_GROWSDOWN", "MAP_DENYWRITE", "MAP_EXECUTABLE",
    "MAP_LOCKED", "MAP_NORESERVE", "MAP_POPULATE", "MAP_NONBLOCK", "MAP_STACK",
    "MAP_HUGETLB", "MAP_FIXED_NOREPLACE"])
_PROT_FLAGS = [(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")]
_CLONE_FLAGS = _flag_names("CLONE_", [
    "CLONE_VM", "CLONE_FS", "CLONE_FILES", "CLONE_SIGHAND", "CLONE_PIDFD", "CLONE_PTRACE",
    "CLONE_VFORK", "CLONE_PARENT", "CLONE_THREAD", "CLONE_NEWNS", "CLONE_SYSVSEM",
    "CLONE_SETTLS", "CLONE_PARENT_SETTID", "CLONE_CHILD_CLEARTID", "CLONE_DETACHED",
    "CLONE_UNTRACED", "CLONE_CHILD_SETTID"])
_AT_FLAGS = _flag_names("AT_", ["AT_SYMLINK_NOFOLLOW", "AT_REMOVEDIR", "AT_SYMLINK_FOLLOW",
                                "AT_NO_AUTOMOUNT", "AT_EMPTY_PATH"])
_SOCK_TYPES = {1: "SOCK_STREAM", 2: "SOCK_DGRAM", 3: "SOCK_RAW", 5: "SOCK_SEQPACKET"}
_SOCK_FLAGS = [(0o4000, "SOCK_NONBLOCK"), (0o2000000, "SOCK_CLOEXEC")]
_AF = {0: "AF_UNSPEC", 1: "AF_UNIX", 2: "AF_INET", 10: "AF_INET6", 16: "AF_NETLINK"}
_SIGNALS = {v: k for k, v in vars(L).items()
            if k.startswith("SIG") and not k.startswith("SIG_") and isinstance(v, int)
            and 0 < v < 65 and k not in ("SIGIOT", "SIGPOLL", "SIGUNUSED", "SIGCLD")}
_FCNTL = {v: k for k, v in vars(L).items() if k.startswith("F_") and isinstance(v, int)
          and k not in ("F_OK", "F_RDLCK", "F_WRLCK", "F_UNLCK")}


def flags(value: int, table: list[tuple[int, str]], zero: str = "0") -> str:
    """``A|B|0x40`` for the bits of ``value`` named in ``table``."""
    parts, rest = [], value
    for bit, name in table:
        if rest & bit == bit:
            parts.append(name)
            rest &= ~bit
    if rest:
        parts.append(hex(rest))
    return "|".join(parts) or zero


def _i32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _open_flags(v: int) -> str:
    v &= 0xFFFFFFFF
    acc = {0: "O_RDONLY", 1: "O_WRONLY", 2: "O_RDWR"}.get(v & L.O_ACCMODE, "O_ACCMODE")
    rest = flags(v & ~L.O_ACCMODE, _OPEN_FLAGS, "")
    return acc + ("|" + rest if rest else "")


def _mmap_flags(v: int) -> str:
    kind = {L.MAP_SHARED: "MAP_SHARED", L.MAP_PRIVATE: "MAP_PRIVATE",
            L.MAP_SHARED_VALIDATE: "MAP_SHARED_VALIDATE"}.get(v & L.MAP_TYPE, hex(v & L.MAP_TYPE))
    rest = flags(v & ~L.MAP_TYPE, _MAP_FLAGS, "")
    return kind + ("|" + rest if rest else "")


def _clone_flags(v: int) -> str:
    sig = v & 0xFF
    rest = flags(v & ~0xFF, _CLONE_FLAGS, "")
    if sig:
        rest = (rest + "|" if rest else "") + _SIGNALS.get(sig, str(sig))
    return rest or "0"


def _sock_type(v: int) -> str:
    t = _SOCK_TYPES.get(v & 0xF, str(v & 0xF))
    rest = flags(v & ~0xF, _SOCK_FLAGS, "")
    return t + ("|" + rest if rest else "")


def _quote(data: bytes, more: bool) -> str:
    out = []
    for b in data:
        c = chr(b)
        if c == '"' or c == "\\":
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif 32 <= b < 127:
            out.append(c)
        else:
            out.append(f"\\{b:o}")
    return '"' + "".join(out) + '"' + ("..." if more else "")


def _path(t: Any, addr: int) -> str:
    if addr == 0:
        return "NULL"
    try:
        s = t.mm.read_cstr(addr, 4096)
    except Exception:  # noqa: BLE001 - an unreadable pointer is shown, not fatal
        return hex(addr)
    return _quote(s, False)


def _buf(t: Any, addr: int, n: int) -> str:
    if addr == 0:
        return "NULL"
    try:
        data = t.mm.read(addr, min(n, STR_MAX))
    except Exception:  # noqa: BLE001
        return hex(addr)
    return _quote(data, n > STR_MAX)


# Argument kinds. "in" buffers are shown at exit too: the observer runs after the
# call, like strace's default output (out-buffers use the result as their length).
Fmt = Callable[[Any, list[int], int, int], str]


def _k(fn: Callable[[int], str]) -> Fmt:
    return lambda t, raw, i, res: fn(raw[i])


_KINDS: dict[str, Fmt] = {
    "fd": _k(lambda v: str(_i32(v))),
    "dirfd": _k(lambda v: "AT_FDCWD" if _i32(v) == L.AT_FDCWD else str(_i32(v))),
    "int": _k(lambda v: str(_i32(v))),
    "long": _k(lambda v: str(v - (1 << 64) if v & (1 << 63) else v)),
    "u": _k(lambda v: str(v & _M64)),
    "hex": _k(lambda v: hex(v & _M64)),
    "ptr": _k(lambda v: "NULL" if v == 0 else hex(v & _M64)),
    "oct": _k(lambda v: "0" + oct(v & 0o7777)[2:]),
    "oflags": _k(_open_flags),
    "atflags": _k(lambda v: flags(v & 0xFFFFFFFF, _AT_FLAGS)),
    "prot": _k(lambda v: flags(v, _PROT_FLAGS, "PROT_NONE")),
    "mflags": _k(_mmap_flags),
    "cflags": _k(_clone_flags),
    "sig": _k(lambda v: _SIGNALS.get(v, str(_i32(v)))),
    "af": _k(lambda v: _AF.get(v, str(v))),
    "stype": _k(_sock_type),
    "fcntl": _k(lambda v: _FCNTL.get(v, str(v))),
    "path": lambda t, raw, i, res: _path(t, raw[i]),
    "inbuf": lambda t, raw, i, res: _buf(t, raw[i], raw[i + 1]),
    "outbuf": lambda t, raw, i, res: _buf(t, raw[i], res) if res >= 0 else hex(raw[i]),
}

# name -> argument kinds, as strace prints them. Calls not listed show three hex words.
SIGNATURES: dict[str, tuple[str, ...]] = {
    "read": ("fd", "outbuf", "u"), "write": ("fd", "inbuf", "u"),
    "pread64": ("fd", "outbuf", "u", "long"), "pwrite64": ("fd", "inbuf", "u", "long"),
    "open": ("path", "oflags", "oct"), "openat": ("dirfd", "path", "oflags", "oct"),
    "creat": ("path", "oct"), "close": ("fd",), "dup": ("fd",), "dup2": ("fd", "fd"),
    "dup3": ("fd", "fd", "oflags"), "lseek": ("fd", "long", "int"),
    "stat": ("path", "ptr"), "lstat": ("path", "ptr"), "fstat": ("fd", "ptr"),
    "newfstatat": ("dirfd", "path", "ptr", "atflags"),
    "statx": ("dirfd", "path", "atflags", "hex", "ptr"),
    "access": ("path", "oct"), "faccessat": ("dirfd", "path", "oct"),
    "faccessat2": ("dirfd", "path", "oct", "atflags"),
    "readlink": ("path", "ptr", "u"), "readlinkat": ("dirfd", "path", "ptr", "u"),
    "chdir": ("path",), "fchdir": ("fd",), "mkdir": ("path", "oct"),
    "mkdirat": ("dirfd", "path", "oct"), "rmdir": ("path",), "unlink": ("path",),
    "unlinkat": ("dirfd", "path", "atflags"), "rename": ("path", "path"),
    "renameat": ("dirfd", "path", "dirfd", "path"),
    "renameat2": ("dirfd", "path", "dirfd", "path", "hex"),
    "symlink": ("path", "path"), "link": ("path", "path"), "chmod": ("path", "oct"),
    "fchmod": ("fd", "oct"), "fchmodat": ("dirfd", "path", "oct"),
    "truncate": ("path", "long"), "ftruncate": ("fd", "long"),
    "getdents64": ("fd", "ptr", "u"), "ioctl": ("fd", "hex", "hex"),
    "fcntl": ("fd", "fcntl", "hex"), "pipe": ("ptr",), "pipe2": ("ptr", "oflags"),
    "mmap": ("ptr", "u", "prot", "mflags", "fd", "hex"), "munmap": ("ptr", "u"),
    "mprotect": ("ptr", "u", "prot"), "brk": ("ptr",), "madvise": ("ptr", "u", "int"),
    "clone": ("cflags", "ptr", "ptr", "ptr", "hex"), "execve": ("path", "ptr", "ptr"),
    "execveat": ("dirfd", "path", "ptr", "ptr", "atflags"),
    "exit": ("int",), "exit_group": ("int",), "wait4": ("int", "ptr", "hex", "ptr"),
    "kill": ("int", "sig"), "tkill": ("int", "sig"), "tgkill": ("int", "int", "sig"),
    "rt_sigaction": ("sig", "ptr", "ptr", "u"), "rt_sigprocmask": ("int", "ptr", "ptr", "u"),
    "socket": ("af", "stype", "int"), "socketpair": ("af", "stype", "int", "ptr"),
    "bind": ("fd", "ptr", "u"), "connect": ("fd", "ptr", "u"), "listen": ("fd", "int"),
    "accept": ("fd", "ptr", "ptr"), "accept4": ("fd", "ptr", "ptr", "oflags"),
    "sendto": ("fd", "inbuf", "u", "hex", "ptr", "u"),
    "recvfrom": ("fd", "outbuf", "u", "hex", "ptr", "ptr"),
    "shutdown": ("fd", "int"), "setsockopt": ("fd", "int", "int", "ptr", "u"),
    "getsockopt": ("fd", "int", "int", "ptr", "ptr"),
    "set_tid_address": ("ptr",), "arch_prctl": ("hex", "hex"),
    "nanosleep": ("ptr", "ptr"), "getrandom": ("ptr", "u", "hex"),
    "set_robust_list": ("ptr", "u"), "prlimit64": ("int", "int", "ptr", "ptr"),
    "uname": ("ptr",), "getcwd": ("ptr", "u"), "sethostname": ("inbuf", "u"),
}

SIGNATURES.update({n: () for n in (
    "getuid", "getgid", "geteuid", "getegid", "getpid", "getppid", "gettid", "getpgrp",
    "setsid", "sched_yield", "pause", "fork", "vfork", "sync", "rt_sigreturn",
    "inotify_init")})

# Results that are addresses, shown in hex.
_HEX_RESULTS = frozenset({"mmap", "brk", "mremap"})


def format_result(name: str, result: int) -> str:
    if -4096 < result < 0:
        code = -result
        sym = _errno.errorcode.get(code, str(code))
        if code == 512:
            return "? ERESTARTSYS (To be restarted if SA_RESTART is set)"
        return f"-1 {sym} ({os.strerror(code)})"
    if name in _HEX_RESULTS:
        return hex(result & _M64)
    return str(result)


def call_name(nr: int, table: dict[int, Any] | None = None) -> str:
    e = (table if table is not None else systable.load()).get(nr)
    return e.name if e else f"syscall_{nr:#x}"


def format_args(t: Any, nr: int, raw: Any, result: int,
                table: dict[int, Any] | None = None) -> str:
    """The decoded argument list (no parentheses)."""
    raw = list(raw)
    kinds = SIGNATURES.get(call_name(nr, table))
    if kinds is None:
        return ", ".join(hex(x) for x in raw[:3]) + ", ..."
    return ", ".join(_KINDS[k](t, raw, i, result) for i, k in enumerate(kinds))


# A successful execve replaces the memory its arguments were in: decode at entry.
DECODE_AT_ENTRY = frozenset({59, 322})


def format_call(t: Any, nr: int, raw: Any, result: int, table: dict[int, Any] | None = None,
                args: str | None = None) -> str:
    """``name(args...) = result`` for one finished call (no trailing newline);
    ``args``: the arguments as decoded at entry, if they were."""
    name = call_name(nr, table)
    if args is None:
        args = format_args(t, nr, raw, result, table)
    return f"{name}({args}) = {format_result(name, result)}"
