"""A task's filesystem context (struct fs_struct): root, cwd and umask.

Threads created with CLONE_FS share one; fork copies it (:meth:`fork`).
"""

from __future__ import annotations

from quark.kernel.vfs.path import Location


class FsContext:
    __slots__ = ("cwd", "root", "umask")

    def __init__(self, root: Location, cwd: Location, umask: int = 0o022) -> None:
        self.root = root
        self.cwd = cwd
        self.umask = umask

    def fork(self) -> FsContext:
        return FsContext(self.root, self.cwd, self.umask)

    def cwd_path(self) -> str:
        """getcwd(2) text: the cwd as seen from this context's root."""
        root, cwd = self.root.path, self.cwd.path
        if root == "/":
            return cwd
        if cwd == root:
            return "/"
        if cwd.startswith(root + "/"):
            return cwd[len(root):]
        return "(unreachable)" + cwd
