"""memfd_create's files (mm/memfd.c): an unlinked tmpfs regular file with seals.

Facts followed:
- The file is named ``memfd:NAME`` (/proc/PID/fd shows ``/memfd:NAME (deleted)``),
  mode 0777 (0666 with MFD_NOEXEC_SEAL), owned by the creator, size 0.
- Seals belong to the inode. Without MFD_ALLOW_SEALING the file starts sealed with
  F_SEAL_SEAL, so F_ADD_SEALS is EPERM. F_SEAL_WRITE/FUTURE_WRITE make writes EPERM,
  F_SEAL_GROW growing (write past the end, ftruncate, fallocate), F_SEAL_SHRINK
  shrinking. Adding seals needs a writable fd (EPERM); unknown bits are EINVAL.
"""

from __future__ import annotations

from typing import Any

from quark.kernel.abi.linux import EINVAL, EPERM, O_APPEND, S_IFREG
from quark.kernel.errors import LinuxError
from quark.kernel.fs.tmpfs.fs import TmpFile, TmpFs, TmpNode
from quark.kernel.vfs.file import total_len

F_SEAL_SEAL = 0x0001
F_SEAL_SHRINK = 0x0002
F_SEAL_GROW = 0x0004
F_SEAL_WRITE = 0x0008
F_SEAL_FUTURE_WRITE = 0x0010
F_SEAL_EXEC = 0x0020
F_ALL_SEALS = F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE \
    | F_SEAL_FUTURE_WRITE | F_SEAL_EXEC

_fs: TmpFs | None = None


def memfd_fs() -> TmpFs:
    """The internal shmem mount every memfd lives on."""
    global _fs
    if _fs is None:
        _fs = TmpFs(name="tmpfs")
    return _fs


class MemFile(TmpFile):
    def __init__(self, node: TmpNode, flags: int, name: str) -> None:
        super().__init__(node, flags, f"/{name} (deleted)", None)  # type: ignore[arg-type]

    @property
    def seals(self) -> int:
        return int(getattr(self.node, "seals", 0))

    def get_seals(self) -> int:
        return self.seals

    def add_seals(self, seals: int) -> int:
        if not self.writable:
            raise LinuxError(EPERM)
        if seals & ~F_ALL_SEALS:
            raise LinuxError(EINVAL)
        if self.seals & F_SEAL_SEAL:
            raise LinuxError(EPERM)
        if seals & F_SEAL_EXEC and self.node.mode() & 0o111:
            seals |= F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_FUTURE_WRITE
        self.node.seals = self.seals | seals  # type: ignore[attr-defined]
        return 0

    def check_resize(self, size: int) -> None:
        cur = len(self.node.data)
        if size > cur and self.seals & F_SEAL_GROW or size < cur and self.seals & F_SEAL_SHRINK:
            raise LinuxError(EPERM)

    async def writev(self, t: Any, bufs: list[memoryview], offset: int | None) -> int:
        if self.seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE):
            raise LinuxError(EPERM)
        if self.seals & F_SEAL_GROW:
            pos = len(self.node.data) if self.flags & O_APPEND else \
                (self.pos if offset is None else offset)
            if pos + total_len(bufs) > len(self.node.data):
                raise LinuxError(EPERM)
        return await super().writev(t, bufs, offset)

    def truncate(self, size: int) -> None:
        self.check_resize(size)
        super().truncate(size)


def make_memfd(t: Any, name: str, flags: int, *, sealing: bool, noexec: bool) -> MemFile:
    from quark.kernel.vfs import perm
    mode = S_IFREG | (0o666 if noexec else 0o777)
    node = TmpNode(memfd_fs(), mode, perm.fsuid(t), perm.fsgid(t), None)
    node.unnamed = True
    node.seals = (F_SEAL_EXEC if noexec else 0) if sealing else F_SEAL_SEAL  # type: ignore[attr-defined]
    return MemFile(node, flags, f"memfd:{name}")
