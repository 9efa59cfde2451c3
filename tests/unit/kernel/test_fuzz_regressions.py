"""Inputs the syscall fuzzer (tests/security) found that made a handler raise or
ask the host for absurd amounts of memory; each must give Linux's errno, fast."""

from __future__ import annotations

import errno
from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.unit.kernel.fakes import call
from tests.unit.kernel.fakes_events import EventTask, make_task


@pytest.fixture
def t(tmp_path: Path) -> EventTask:
    return make_task(tmp_path)


def _mapped(t: EventTask, lo: int, hi: int) -> None:
    """Pretend [lo, hi) is mapped and resident (mincore's view of the mm)."""
    t.mm.vmas = SimpleNamespace(find=lambda p: object() if lo <= p < hi else None)  # type: ignore[attr-defined]
    t.mm.frames = range(lo, hi, 4096)  # type: ignore[attr-defined]


def test_mincore_huge_length_is_enomem_without_a_huge_vector(t: EventTask) -> None:
    vec = t.mm.alloc(16)
    _mapped(t, 0x10000, 0x12000)
    # Beyond the user address range: Linux's access_ok fails first.
    assert call(t, 27, 0x10000, (1 << 64) - 4096, vec) == -errno.ENOMEM
    assert call(t, 27, 0x10000, 1 << 47, vec) == -errno.ENOMEM
    # In range but mostly unmapped: ENOMEM at the first hole, vector bytes written
    # page by page (quark built a 2**34-byte vector first: MemoryError).
    assert call(t, 27, 0x10000, 1 << 46, vec) == -errno.ENOMEM
    assert call(t, 27, 0x10000, 0x2000, vec) == 0
    assert t.mm.read(vec, 2) == b"\1\1"


def test_memfd_truncate_beyond_memory_is_enospc(t: EventTask) -> None:
    fd = call(t, 319, t.mm.cstr("big"), 0)
    # tmpfs data is not sparse here: 1 TiB would be a host allocation.
    assert call(t, 77, fd, 1 << 40) == -errno.ENOSPC
    assert call(t, 77, fd, 1 << 20) == 0
    assert call(t, 77, fd, 0) == 0


def test_ipv6_flowinfo_beyond_the_flow_label_is_ignored() -> None:
    import socket
    import struct

    from quark.kernel.net import abi as N
    from quark.kernel.net.hostinet import parse_addr
    raw = struct.pack("<H", N.AF_INET6) + struct.pack(">HI", 9, 0xFFFFFFFF) \
        + socket.inet_pton(socket.AF_INET6, "::1") + struct.pack("<I", 0)
    addr = parse_addr(N.AF_INET6, raw)
    assert addr == ("::1", 9, 0xFFFFF, 0)
    try:
        s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    except OSError:
        pytest.skip("no IPv6 here")
    with s:
        # Python raised OverflowError for flowinfo >= 2**20 (connect(2) never fails so).
        assert s.connect_ex(addr) in (0, errno.EADDRNOTAVAIL, errno.ENETUNREACH)


def test_all_tmpfs_mounts_share_the_guest_memory_budget(monkeypatch) -> None:
    from quark.kernel.errors import LinuxError
    from quark.kernel.fs.tmpfs import fs as tmpfs
    monkeypatch.setattr(tmpfs, "_budget", {"limit": 3 << 20, "used": 0})
    a, b = tmpfs.TmpFs(), tmpfs.TmpFs()
    a.charge(2 << 20)
    with pytest.raises(LinuxError) as e:
        b.charge(2 << 20)               # each alone would fit; together they do not
    assert e.value.errno == errno.ENOSPC
    a.charge(-(2 << 20))
    b.charge(2 << 20)


def test_unlinked_open_tmpfs_file_keeps_its_data_until_the_last_close() -> None:
    from quark.kernel.fs.tmpfs import fs as tmpfs
    fs = tmpfs.TmpFs()
    node = tmpfs.TmpNode(fs, 0o100644, 0, 0, None)
    f = tmpfs.TmpFile(node, 0o2, "/x", None)    # type: ignore[arg-type]
    node.resize(4096)
    used = fs.used
    node.nlink = 0
    node.release_data()                          # unlinked, still open: kept
    assert len(node.data) == 4096 and fs.used == used
    f.incref()
    f.decref()                                   # the last close frees it
    assert len(node.data) == 0 and fs.used == used - 4096
