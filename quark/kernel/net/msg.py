"""Guest socket structures: sockaddr arguments, struct msghdr, iovec arrays and
control messages (net/socket.c, net/core/scm.c rules and errnos).

- An address argument longer than sockaddr_storage (128) or negative is EINVAL;
  in a msghdr a longer msg_namelen is clamped instead.
- More than UIO_MAXIOV (1024) iovecs in a msghdr is EMSGSIZE; an iov_len with the
  sign bit set is EINVAL; the total is clamped to MAX_RW_COUNT.
- msg_controllen above INT_MAX (or the socket option memory, 128 KiB here) is
  ENOBUFS; a control buffer shorter than a cmsghdr is ignored; a cmsg whose
  cmsg_len is short or runs past the buffer is EINVAL.
- SCM_RIGHTS: 1..253 fds (EINVAL otherwise), each must be open (EBADF).
  SCM_CREDENTIALS: the sender's tgid (or CAP_SYS_ADMIN), one of its uids (or
  CAP_SETUID) and gids (or CAP_SETGID), else EPERM.
- Receiving: a control buffer too short for a message sets MSG_CTRUNC; file
  descriptors that do not fit are closed.
"""

from __future__ import annotations

import struct
from typing import Any

from quark.kernel.abi.linux import (
    EBADF,
    EINVAL,
    EMSGSIZE,
    ENOBUFS,
    EPERM,
    IOV_MAX,
    MAX_RW_COUNT,
)
from quark.kernel.creds import CAP_SETGID, CAP_SETUID, CAP_SYS_ADMIN
from quark.kernel.errors import LinuxError
from quark.kernel.net import abi as N
from quark.kernel.net.socket import Ancillary, IoVec, Received
from quark.kernel.vfs.fdtable import nofile_limit

_IOVEC = struct.Struct("<QQ")
CONTROL_MAX = 131072


def read_addr(t: Any, ptr: int, length: int) -> bytes:
    """move_addr_to_kernel."""
    if length < 0 or length > N.SOCKADDR_STORAGE:
        raise LinuxError(EINVAL)
    if length == 0:
        return b""
    return bytes(t.mm.read(ptr, length))


def write_addr(t: Any, ptr: int, lenptr: int, data: bytes | None) -> None:
    """move_addr_to_user: copy what fits, then store the full length."""
    if not ptr:
        return
    ulen = _s32(t.mm.read_u32(lenptr))
    if ulen < 0:
        raise LinuxError(EINVAL)
    data = data or b""
    n = min(ulen, len(data))
    if n:
        t.mm.write(ptr, data[:n])
    t.mm.write_u32(lenptr, len(data))


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def single(t: Any, buf: int, length: int, write: bool) -> IoVec:
    return IoVec(t, [(buf, min(length, MAX_RW_COUNT))] if length else [], write)


def iovec_ranges(t: Any, ptr: int, cnt: int, write: bool) -> IoVec:
    if cnt > IOV_MAX:
        raise LinuxError(EMSGSIZE)
    if cnt == 0:
        return IoVec(t, [], write)
    raw = t.mm.read(ptr, cnt * _IOVEC.size)
    ranges = []
    total = 0
    for i in range(cnt):
        base, ln = _IOVEC.unpack_from(raw, i * _IOVEC.size)
        if ln >> 63:
            raise LinuxError(EINVAL)
        ln = min(ln, MAX_RW_COUNT - total)
        if ln:
            ranges.append((base, ln))
            total += ln
    return IoVec(t, ranges, write)


class MsgHdr:
    """A decoded struct msghdr (``addr`` is the guest address of the struct)."""

    def __init__(self, t: Any, addr: int, write: bool) -> None:
        raw = t.mm.read(addr, N.MSGHDR.size)
        (self.name, namelen, iov, iovlen, self.control, controllen,
         self.flags) = N.MSGHDR.unpack(raw)
        namelen = _s32(namelen)
        if namelen < 0:
            raise LinuxError(EINVAL)
        self.addr = addr
        self.namelen = min(namelen, N.SOCKADDR_STORAGE) if self.name else 0
        if controllen > 0x7FFFFFFF:
            raise LinuxError(ENOBUFS)
        self.controllen = controllen if self.control else 0
        self.iov = iovec_ranges(t, iov, iovlen, write)


def parse_control(t: Any, data: bytes, unix: bool) -> Ancillary:
    """The cmsgs of a sendmsg; on any error the files taken so far are let go."""
    anc = Ancillary()
    try:
        _parse_control(t, data, unix, anc)
    except LinuxError:
        anc.drop()
        raise
    return anc


def _parse_control(t: Any, data: bytes, unix: bool, anc: Ancillary) -> None:
    off = 0
    while len(data) - off >= N.CMSGHDR.size:
        clen, level, ctype = N.CMSGHDR.unpack_from(data, off)
        if clen < N.CMSGHDR.size or clen > len(data) - off:
            raise LinuxError(EINVAL)
        payload = data[off + N.CMSGHDR.size:off + clen]
        if level == N.SOL_SOCKET:
            if ctype == N.SCM_RIGHTS:
                if not unix:
                    raise LinuxError(EINVAL)
                n = len(payload) // 4
                if n <= 0 or len(anc.files) + n > N.SCM_MAX_FD:
                    raise LinuxError(EINVAL)
                for (fd,) in struct.iter_unpack("<i", payload[:n * 4]):
                    f = t.fds.get(fd) if fd >= 0 else None
                    if f is None:
                        raise LinuxError(EBADF)
                    f.incref()
                    anc.files.append(f)
            elif ctype == N.SCM_CREDENTIALS:
                if clen != N.cmsg_len(N.UCRED.size):
                    raise LinuxError(EINVAL)
                anc.creds = _check_creds(t, N.UCRED.unpack(payload))
            else:
                raise LinuxError(EINVAL)
        else:
            anc.other.append((level, ctype, bytes(payload)))
        off += N.cmsg_align(clen)


def _check_creds(t: Any, ucred: tuple[int, int, int]) -> tuple[int, int, int]:
    pid, uid, gid = ucred
    c = t.creds
    ok = ((pid == t.pid or c.capable(CAP_SYS_ADMIN))
          and (uid in (c.uid, c.euid, c.suid) or c.capable(CAP_SETUID))
          and (gid in (c.gid, c.egid, c.sgid) or c.capable(CAP_SETGID)))
    if not ok:
        raise LinuxError(EPERM)
    return (pid, uid, gid)


def build_control(t: Any, r: Received, space: int, cloexec: bool) -> tuple[bytes, int]:
    """The control bytes a receive hands back within ``space`` bytes, and the
    msg_flags to add (MSG_CTRUNC). Installs SCM_RIGHTS files; drops the rest."""
    out = bytearray()
    flags = 0
    items: list[tuple[int, int, bytes]] = []
    if r.creds is not None:
        items.append((N.SOL_SOCKET, N.SCM_CREDENTIALS, N.UCRED.pack(*r.creds)))
    items.extend(r.cmsgs)
    for level, ctype, payload in items:
        room = space - len(out)
        if room < N.CMSGHDR.size:
            flags |= N.MSG_CTRUNC
            break
        need = N.cmsg_len(len(payload))
        if room < need:
            flags |= N.MSG_CTRUNC
            need = room
        out += N.CMSGHDR.pack(need, level, ctype) + payload[:need - N.CMSGHDR.size]
        out += bytes(min(N.cmsg_align(need), room) - need)
    files, r.files = r.files, []
    if files:
        room = space - len(out)
        fdmax = (room - N.CMSGHDR.size) // 4 if room > N.CMSGHDR.size else 0
        fds: list[int] = []
        limit = nofile_limit(t)
        for f in files[:max(fdmax, 0)]:
            try:
                fds.append(t.fds.install(f, cloexec, limit=limit))
            except LinuxError:
                break
        for f in files:
            f.decref()  # the in-flight reference; installed ones hold their own
        if len(fds) < len(files):
            flags |= N.MSG_CTRUNC
        if fds:
            payload = struct.pack(f"<{len(fds)}i", *fds)
            clen = N.cmsg_len(len(payload))
            out += N.CMSGHDR.pack(clen, N.SOL_SOCKET, N.SCM_RIGHTS) + payload
            out += bytes(min(N.cmsg_space(len(payload)), room) - clen)
    elif r.creds is None and not r.cmsgs:
        return b"", 0
    return bytes(out), flags


def build_control_none(r: Received) -> int:
    """No control buffer: anything ancillary is lost and reported as MSG_CTRUNC."""
    lost = bool(r.files) or r.creds is not None or bool(r.cmsgs)
    for f in r.files:
        f.decref()
    r.files = []
    return N.MSG_CTRUNC if lost else 0
