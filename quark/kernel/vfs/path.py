"""Path resolution (fs/namei.c): component by component, across mounts, with
symlinks resolved here in the kernel, never by the host.

Facts followed:
- At most MAXSYMLINKS (40) symlinks per resolution, else ELOOP.
- ``..`` at the task's root stays there; ``..`` at the root of a mount goes to the
  directory holding its mountpoint.
- Each directory passed through needs search (exec) permission; a non-directory in
  the middle of a path is ENOTDIR; a component longer than NAME_MAX is ENAMETOOLONG.
- A trailing slash means "must be a directory" and makes the last symlink followed.
- Names are ``str`` decoded from guest bytes with surrogateescape, so every byte
  string round-trips (:func:`fsencode`).
"""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any

from quark.kernel.abi.linux import (
    ELOOP,
    ENAMETOOLONG,
    ENOENT,
    ENOTDIR,
    MAXSYMLINKS,
    MAY_EXEC,
    NAME_MAX,
    PATH_MAX,
)
from quark.kernel.errors import LinuxError
from quark.kernel.vfs import perm
from quark.kernel.vfs.inode import Node

if TYPE_CHECKING:
    from quark.kernel.vfs.file import File
    from quark.kernel.vfs.mount import Mount


def fsdecode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


def fsencode(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def join(base: str, name: str) -> str:
    return base + name if base.endswith("/") else f"{base}/{name}"


def dirname(path: str) -> str:
    head = path.rsplit("/", 1)[0]
    return head or "/"


class Location:
    """A (mount, node) pair plus the container path it was reached by (for getcwd,
    /proc fd links and error messages; it is not re-derived after renames)."""

    __slots__ = ("mount", "node", "path")

    def __init__(self, mount: Mount, node: Node, path: str) -> None:
        self.mount = mount
        self.node = node
        self.path = path

    def same(self, other: Location) -> bool:
        return self.mount is other.mount and self.node.key() == other.node.key()

    def is_mount_root(self) -> bool:
        return self.node.key() == self.mount.root.key()

    def __repr__(self) -> str:
        return f"Location({self.path!r}, {type(self.node).__name__})"


class FileNode(Node):
    """What a magic link without a location (a pipe, a socket, stdio) leads to:
    opening it shares the already open file, as reopening a pipe does."""

    def __init__(self, file: File, fs: Any) -> None:
        self.file = file
        self.fs = fs

    def key(self) -> object:
        return ("file", id(self.file))

    def stat(self) -> Any:
        return self.file.stat()

    def open(self, t: Any, flags: int, loc: Location) -> File:
        return self.file


def split(path: str) -> list[str]:
    return [c for c in path.split("/") if c]


def check_path_len(path: str) -> None:
    if len(fsencode(path)) >= PATH_MAX:
        raise LinuxError(ENAMETOOLONG)


class Resolver:
    """One resolution (Linux's nameidata): the symlink budget spans every step,
    including the restarts of open(O_CREAT) through dangling links."""

    def __init__(self, t: Any) -> None:
        self.t = t
        self.root: Location = t.fs.root
        self.links = 0
        self.root_bypass = perm.is_root(t)

    def start(self, base: Location, path: str) -> Location:
        return self.root if path.startswith("/") else base

    # ---- single steps
    def search(self, d: Location) -> None:
        if not d.node.is_dir():
            raise LinuxError(ENOTDIR)
        if not self.root_bypass:
            perm.check(self.t, d.node.stat(), MAY_EXEC)

    def dotdot(self, cur: Location) -> Location:
        if cur.same(self.root):
            return cur
        if cur.is_mount_root():
            # parent_loc is the directory holding the mountpoint: that *is* "..".
            up = cur.mount.parent_loc
            return cur if up is None else up
        return Location(cur.mount, cur.node.parent(), dirname(cur.path))

    def child(self, d: Location, name: str) -> Location:
        """``name`` in directory ``d`` (search permission already checked)."""
        if len(fsencode(name)) > NAME_MAX:
            raise LinuxError(ENAMETOOLONG)
        path = join(d.path, name)
        m = d.mount.vfs.mounted_at(d, name)
        if m is not None:
            return Location(m, m.root, path)
        return Location(d.mount, d.node.lookup(self.t, name), path)

    def child_or_none(self, d: Location, name: str) -> Location | None:
        try:
            return self.child(d, name)
        except LinuxError as e:
            if e.errno == ENOENT:
                return None
            raise

    def link_target(self, link: Location) -> tuple[Location | None, str]:
        """Count one symlink; returns (magic destination, None) or (None, target)."""
        self.links += 1
        if self.links > MAXSYMLINKS:
            raise LinuxError(ELOOP)
        f = link.node.magic_file(self.t)
        if f is not None:
            if f.loc is not None:
                return f.loc, ""
            return Location(link.mount, FileNode(f, link.node.fs), f.path), ""
        target = link.node.readlink(self.t)
        if not target:
            raise LinuxError(ENOENT)
        return None, target

    # ---- whole walks
    def walk(self, cur: Location, comps: collections.deque[str], follow_last: bool) -> Location:
        while comps:
            name = comps.popleft()
            self.search(cur)
            if name == ".":
                continue
            if name == "..":
                cur = self.dotdot(cur)
                continue
            nxt = self.child(cur, name)
            if nxt.node.is_symlink() and (comps or follow_last):
                magic, target = self.link_target(nxt)
                if magic is not None:
                    cur = magic
                else:
                    comps.extendleft(reversed(split(target)))
                    if target.startswith("/"):
                        cur = self.root
                continue
            cur = nxt
        return cur

    def resolve(self, base: Location, path: str, follow: bool = True) -> Location:
        """The location ``path`` names; ENOENT if it does not exist."""
        check_path_len(path)
        if not path:
            raise LinuxError(ENOENT)
        comps = collections.deque(split(path))
        if path.endswith("/") and comps:
            comps.append(".")  # a trailing slash: follow the last link, require a dir
        return self.walk(self.start(base, path), comps, follow)

    def resolve_parent(self, base: Location, path: str) -> tuple[Location, str, bool]:
        """(directory, last component, trailing slash). The last component may be
        "." or ".." (callers turn that into EEXIST/EBUSY/EINVAL as Linux does) or ""
        for "/" itself."""
        check_path_len(path)
        if not path:
            raise LinuxError(ENOENT)
        comps = collections.deque(split(path))
        last = comps.pop() if comps else ""
        d = self.walk(self.start(base, path), comps, True)
        self.search(d)
        return d, last, path.endswith("/")


def resolve(t: Any, base: Location, path: str, follow: bool = True) -> Location:
    return Resolver(t).resolve(base, path, follow)
