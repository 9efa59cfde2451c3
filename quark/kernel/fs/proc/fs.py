"""procfs: a synthetic tree whose file contents are generated when opened.

Process data come from ``kernel.procs()`` (a list of :class:`ProcInfo`), the
caller's pid from ``t.pid``; the kernel is ``t.kernel`` (or ``vfs.kernel``).
Links under /proc/<own pid>/ (fd/N, cwd, root) are "magic": a walk through them
reaches the open file or directory itself, as on Linux, not a path re-resolved.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from quark.kernel.abi.linux import (
    EACCES,
    EBADF,
    ENOENT,
    O_ACCMODE,
    O_PATH,
    O_RDONLY,
    PROC_SUPER_MAGIC,
    S_IFDIR,
    S_IFLNK,
    S_IFREG,
)
from quark.kernel.errors import LinuxError
from quark.kernel.fs.proc import text
from quark.kernel.fs.proc.info import ProcInfo
from quark.kernel.vfs.dirfile import DirFile
from quark.kernel.vfs.file import File, PathFile, copy_out, seek_position
from quark.kernel.vfs.inode import DirEntry, FileSystem, Node, dtype_of
from quark.kernel.vfs.path import Location, dirname
from quark.kernel.vfs.stat import Stat

Gen = Callable[[Any], str | bytes]
Factory = Callable[[], "PNode"]


def _uuid4() -> str:
    """str(uuid.uuid4()): importing uuid (and platform with it) cost ~3 ms of every
    sandbox start, for the one /proc mount."""
    b = bytearray(os.urandom(16))
    b[6] = b[6] & 0x0F | 0x40       # version 4
    b[8] = b[8] & 0x3F | 0x80       # RFC 4122 variant
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class ProcFs(FileSystem):
    name = "proc"
    magic = PROC_SUPER_MAGIC

    def __init__(self, vfs: Any) -> None:
        super().__init__()
        self.vfs = vfs
        self._inos: dict[str, int] = {"": 1}
        self.boot_id = _uuid4()
        # /proc's own entries (not the processes'): built once per kernel.
        self._static: tuple[Any, dict[str, Factory]] | None = None
        self.root: PDir = PDir(self, "", self._root_entries, one=self._root_one)

    # ---- data sources
    def kernel(self, t: Any) -> Any:
        return getattr(t, "kernel", None) or self.vfs.kernel

    def procs(self, t: Any) -> list[ProcInfo]:
        k = self.kernel(t)
        return list(k.procs()) if k is not None and hasattr(k, "procs") else []

    def proc(self, t: Any, pid: int) -> ProcInfo:
        k = self.kernel(t)
        if k is not None and hasattr(k, "proc"):
            info = k.proc(pid)      # this one process's snapshot, not everyone's
            if info is None:
                raise LinuxError(ENOENT)
            return info  # type: ignore[no-any-return]
        for p in self.procs(t):
            if p.pid == pid:
                return p
        raise LinuxError(ENOENT)

    def ino(self, ppath: str) -> int:
        n = self._inos.get(ppath)
        if n is None:
            n = self._inos[ppath] = len(self._inos) + 1
        return n

    def node_at(self, ppath: str) -> PNode:
        node: PNode = self.root
        for c in [c for c in ppath.split("/") if c]:
            nxt = node.lookup(None, c)
            assert isinstance(nxt, PNode)
            node = nxt
        return node

    # ---- the tree
    def _root_one(self, t: Any, name: str) -> Factory | None:
        """A lookup in /proc without building every entry: a process's directory
        needs only its owner, and /proc's own entries are made once. readlink of
        /proc/self/exe, which static glibc does at start, took 59 µs when each
        lookup snapshotted every process (now ~35)."""
        if name.isascii() and name.isdigit():
            if str(int(name)) != name:
                return None
            k = self.kernel(t)
            if k is not None and hasattr(k, "proc_owner"):
                owner = k.proc_owner(int(name))
            else:
                try:
                    p = self.proc(t, int(name))
                except LinuxError:
                    return None
                owner = (p.uid, p.gid)
            return None if owner is None else self._pid_factory(name, int(name), *owner)
        static = self._static
        if static is None or static[0] is not self.kernel(t):
            static = self._static = (self.kernel(t), self._root_entries(t, with_procs=False))
        return static[1].get(name)

    def _root_entries(self, t: Any, with_procs: bool = True) -> dict[str, Factory]:
        k = self.kernel(t)
        d: dict[str, Factory] = {
            "cpuinfo": self._file("cpuinfo", lambda t: text.host_file("/proc/cpuinfo")),
            "meminfo": self._file("meminfo", lambda t: text.host_file("/proc/meminfo")),
            "uptime": self._file("uptime", lambda t: text.uptime(self.kernel(t))),
            "loadavg": self._file("loadavg", lambda t: text.loadavg(self.procs(t))),
            "stat": self._file("stat", lambda t: text.stat(self.kernel(t), self.procs(t))),
            "version": self._file("version", lambda t: text.version(self.kernel(t))),
            "filesystems": self._file("filesystems", lambda t: text.filesystems()),
            "locks": self._file("locks", lambda t: text.locks(self.kernel(t))),
            "mounts": self._link("mounts", lambda t: "self/mounts"),
            "self": self._link("self", lambda t: str(t.pid)),
            "thread-self": self._link("thread-self", lambda t: f"{t.pid}/task/{t.tid}"),
            "sys": lambda: PDir(self, "sys", _tree(self, "sys", self._sys_tree(k))),
        }
        if with_procs:
            for p in self.procs(t):
                d[str(p.pid)] = self._pid_factory(str(p.pid), p.pid, p.uid, p.gid)
        return d

    def _sys_tree(self, k: Any) -> dict[str, Any]:
        return {
            "kernel": {
                "hostname": lambda t: f"{getattr(self.kernel(t), 'hostname', 'quark')}\n",
                "domainname": lambda t: f"{getattr(self.kernel(t), 'domainname', '(none)')}\n",
                "ostype": "Linux\n",
                "osrelease": lambda t: text.release(self.kernel(t)) + "\n",
                "version": "#1 SMP PREEMPT_DYNAMIC\n",
                "pid_max": "4194304\n", "threads-max": "126862\n",
                "ngroups_max": "65536\n", "cap_last_cap": "40\n",
                "overflowuid": "65534\n", "overflowgid": "65534\n",
                "shmmax": "18446744073692774399\n", "shmall": "18446744073692774399\n",
                "random": {"boot_id": lambda t: self.boot_id + "\n",
                           "uuid": lambda t: _uuid4() + "\n",
                           "entropy_avail": "256\n", "poolsize": "256\n"},
            },
            "vm": {"overcommit_memory": "0\n", "max_map_count": "65530\n",
                   "swappiness": "60\n"},
            "fs": {"file-max": "9223372036854775807\n", "nr_open": "1048576\n",
                   "pipe-max-size": "1048576\n"},
            "net": {"core": {"somaxconn": "4096\n"},
                    "ipv4": {"ip_local_port_range": "32768\t60999\n"}},
        }

    def _file(self, ppath: str, gen: Gen, uid: int = 0, gid: int = 0,
              mode: int = 0o444) -> Factory:
        return lambda: PFile(self, ppath, gen, uid, gid, mode)

    def _link(self, ppath: str, target: Callable[[Any], str],
              magic: Callable[[Any], File | None] | None = None,
              uid: int = 0, gid: int = 0) -> Factory:
        return lambda: PLink(self, ppath, target, magic, uid, gid)

    def _pid_factory(self, ppath: str, pid: int, uid: int, gid: int) -> Factory:
        return lambda: PDir(self, ppath, lambda t: self._pid_entries(t, ppath, pid, uid, gid),
                            uid, gid, 0o555)

    def _pid_entries(self, t: Any, base: str, pid: int, uid: int, gid: int) -> dict[str, Factory]:
        def info(t: Any) -> ProcInfo:
            return self.proc(t, pid)

        def own(t: Any) -> bool:
            return t is not None and getattr(t, "pid", None) == pid

        def f(name: str, gen: Gen, mode: int = 0o444) -> Factory:
            return self._file(f"{base}/{name}", gen, uid, gid, mode)

        def lnk(name: str, target: Callable[[Any], str],
                magic: Callable[[Any], File | None] | None = None) -> Factory:
            return self._link(f"{base}/{name}", target, magic, uid, gid)

        def cwd_magic(t: Any) -> File | None:
            return PathFile(O_PATH, t.fs.cwd.path, t.fs.cwd) if own(t) else None

        def root_magic(t: Any) -> File | None:
            return PathFile(O_PATH, t.fs.root.path, t.fs.root) if own(t) else None

        def maps(t: Any) -> str:
            m = getattr(t, "mm", None) if own(t) else None
            return str(m.maps_text()) if m is not None and hasattr(m, "maps_text") else ""

        d: dict[str, Factory] = {
            "status": f("status", lambda t: text.pid_status(info(t))),
            "stat": f("stat", lambda t: text.pid_stat(info(t))),
            "statm": f("statm", lambda t: text.pid_statm(info(t))),
            "cmdline": f("cmdline", lambda t: info(t).cmdline),
            "comm": f("comm", lambda t: info(t).comm + "\n", 0o644),
            "environ": f("environ", lambda t: info(t).environ, 0o400),
            "maps": f("maps", maps),
            "mounts": f("mounts", lambda t: text.mounts(self.vfs)),
            "mountinfo": f("mountinfo", lambda t: text.mountinfo(self.vfs)),
            "cgroup": f("cgroup", lambda t: "0::/\n"),
            "oom_score_adj": f("oom_score_adj", lambda t: "0\n", 0o644),
            "loginuid": f("loginuid", lambda t: "4294967295\n", 0o644),
            "exe": lnk("exe", lambda t: info(t).exe),
            "cwd": lnk("cwd", lambda t: info(t).cwd, cwd_magic),
            "root": lnk("root", lambda t: info(t).root, root_magic),
            "fd": lambda: PDir(self, f"{base}/fd", lambda t: self._fd_entries(t, base, pid, uid,
                                                                            gid),
                               uid, gid, 0o500),
        }
        if "/task/" not in base:
            d["task"] = lambda: PDir(self, f"{base}/task", lambda t: {
                str(pid): self._pid_factory(f"{base}/task/{pid}", pid, uid, gid)}, uid, gid, 0o555)
        return d

    def _fd_entries(self, t: Any, base: str, pid: int, uid: int, gid: int) -> dict[str, Factory]:
        fds = self.proc(t, pid).fds
        out: dict[str, Factory] = {}
        for fd, target in fds.items():
            def magic(t: Any, fd: int = fd) -> File | None:
                if t is None or getattr(t, "pid", None) != pid:
                    return None
                try:
                    return t.fds.get(fd)  # type: ignore[no-any-return]
                except LinuxError as e:
                    if e.errno == EBADF:
                        raise LinuxError(ENOENT) from e
                    raise
            out[str(fd)] = self._link(f"{base}/fd/{fd}", _const(target), magic, uid, gid)
        return out


def _tree(fs: ProcFs, base: str, spec: dict[str, Any]) -> Callable[[Any], dict[str, Factory]]:
    """Entries of a static directory described by nested dicts (leaves: text or gen)."""
    def entries(t: Any) -> dict[str, Factory]:
        out: dict[str, Factory] = {}
        for name, v in spec.items():
            p = f"{base}/{name}"
            if isinstance(v, dict):
                out[name] = _subdir(fs, p, v)
            else:
                out[name] = fs._file(p, v if callable(v) else _const(v))
        return out
    return entries


def _const(s: str) -> Callable[[Any], str]:
    return lambda t: s


def _subdir(fs: ProcFs, p: str, spec: dict[str, Any]) -> Factory:
    return lambda: PDir(fs, p, _tree(fs, p, spec))


class PNode(Node):
    fs: ProcFs

    def __init__(self, fs: ProcFs, ppath: str, mode: int, uid: int, gid: int) -> None:
        self.fs = fs
        self.ppath = ppath
        self._mode = mode
        self.uid, self.gid = uid, gid

    def key(self) -> str:
        return self.ppath

    def mode(self) -> int:
        return self._mode

    def stat(self) -> Stat:
        k = self.fs.vfs.kernel
        bt = int(float(getattr(k, "boot_time", 0.0)) * 1e9)
        return Stat(mode=self._mode, ino=self.fs.ino(self.ppath), dev=self.fs.dev,
                    nlink=2 if self._mode & S_IFDIR else 1, uid=self.uid, gid=self.gid,
                    size=0, blksize=1024, atime_ns=bt, mtime_ns=bt, ctime_ns=bt)

    def parent(self) -> PNode:
        if not self.ppath:
            return self
        return self.fs.node_at(dirname("/" + self.ppath)[1:])


class PDir(PNode):
    def __init__(self, fs: ProcFs, ppath: str, entries: Callable[[Any], dict[str, Factory]],
                 uid: int = 0, gid: int = 0, perm: int = 0o555,
                 one: Callable[[Any, str], Factory | None] | None = None) -> None:
        super().__init__(fs, ppath, S_IFDIR | perm, uid, gid)
        self.entries = entries
        self.one = one          # looks up one name without building every entry

    def lookup(self, t: Any, name: str) -> PNode:
        make = self.one(t, name) if self.one is not None else self.entries(t).get(name)
        if make is None:
            raise LinuxError(ENOENT)
        return make()

    def readdir(self, t: Any) -> list[DirEntry]:
        out = []
        for name, make in self.entries(t).items():
            try:
                n = make()
            except LinuxError:
                continue
            out.append(DirEntry(name, self.fs.ino(n.ppath), dtype_of(n.mode())))
        return out

    def open(self, t: Any, flags: int, loc: Location) -> File:
        if flags & O_PATH:
            return PathFile(flags, loc.path, loc)
        from quark.kernel.vfs.mount import list_dir
        return DirFile(flags, loc.path, loc, lambda: list_dir(t, loc))


class PFile(PNode):
    def __init__(self, fs: ProcFs, ppath: str, gen: Gen, uid: int = 0, gid: int = 0,
                 perm: int = 0o444) -> None:
        super().__init__(fs, ppath, S_IFREG | perm, uid, gid)
        self.gen = gen

    def open(self, t: Any, flags: int, loc: Location) -> File:
        if flags & O_PATH:
            return PathFile(flags, loc.path, loc)
        if flags & O_ACCMODE != O_RDONLY:
            raise LinuxError(EACCES)  # no writable proc files are emulated
        data = self.gen(t)
        return ProcDataFile(data.encode() if isinstance(data, str) else bytes(data),
                            flags, loc.path, loc)


class PLink(PNode):
    def __init__(self, fs: ProcFs, ppath: str, target: Callable[[Any], str],
                 magic: Callable[[Any], File | None] | None, uid: int = 0,
                 gid: int = 0) -> None:
        super().__init__(fs, ppath, S_IFLNK | 0o777, uid, gid)
        self.target = target
        self.magic = magic

    def readlink(self, t: Any) -> str:
        return self.target(t)

    def magic_file(self, t: Any) -> File | None:
        return self.magic(t) if self.magic is not None else None


class ProcDataFile(File):
    """A snapshot of generated text, read like a regular file."""

    seekable = True

    def __init__(self, data: bytes, flags: int, path: str, loc: Location) -> None:
        super().__init__(flags, path, loc)
        self.data = data

    def read_at(self, bufs: list[memoryview], offset: int) -> int:
        return copy_out(memoryview(self.data)[offset:], bufs) if offset < len(self.data) else 0

    async def readv(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        n = self.read_at(bufs, self.pos if offset is None else offset)
        if offset is None:
            self.pos += n
        return n

    def lseek(self, off: int, whence: int) -> int:
        self.pos = seek_position(self.pos, len(self.data), off, whence)
        return self.pos
