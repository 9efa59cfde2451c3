"""table.fast twins of read/write/pread64/pwrite64 (taskrun's QCall fast path): the
same result and errno as the coroutine handler for every input, and None (hand the
call over) for files that may sleep."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from quark.kernel.abi.linux import O_PATH, O_RDONLY, O_RDWR, O_WRONLY
from quark.kernel.syscalls.table import load

from .fakes import FakeKernel, FakeTask, call
from .fakes import fast_call as _fast

SYS_open = 2


@pytest.fixture
def t(tmp_path: Path) -> FakeTask:
    (tmp_path / "f").write_bytes(bytes(range(256)) * 64)
    load()
    return FakeKernel(str(tmp_path)).task()


def test_same_results_and_errnos_as_the_handlers(t: FakeTask) -> None:
    path = t.mm.cstr("/f")
    fds = {m: call(t, SYS_open, path, m) for m in (O_RDONLY, O_WRONLY, O_RDWR, O_PATH)}
    buf = t.mm.alloc(8192)
    bad = 0x10                                       # below the fake's memory: EFAULT
    cases = []
    for nr in (0, 1, 17, 18):
        for fd in (*fds.values(), 99, -1, (1 << 32) + fds[O_RDWR]):
            for addr, count in ((buf, 4096), (buf + 100, 5000), (bad, 10), (buf, 0)):
                for pos in (0, 100, 1 << 40, (1 << 64) - 1):
                    cases.append((nr, fd, addr, count, pos))
    for nr, fd, addr, count, pos in cases:
        got = _fast(t, nr, fd & ((1 << 64) - 1), addr, count, pos)
        want = call(t, nr, fd & ((1 << 64) - 1), addr, count, pos)
        if nr in (0, 1) and got is not None and got >= 0 and want >= 0:
            continue        # each call moved the shared file position
        assert got == want, (nr, fd, addr, count, pos)


def test_files_that_may_sleep_are_handed_over(t: FakeTask) -> None:
    r, w = os.pipe()
    from quark.kernel.fs.host.file import HostStreamFile
    fd = t.fds.install(HostStreamFile(r, O_RDONLY, "pipe:[1]", owned=True))
    assert _fast(t, 0, fd, t.mm.alloc(16), 16) is None
    os.close(w)


def test_identity_twins_answer_what_the_handlers_do() -> None:
    """getpid, getppid, gettid and the four id calls have plain twins: the same
    answer as the handler, for a task whose every id differs."""
    from types import SimpleNamespace

    from quark.kernel.creds import Creds
    load()
    t = SimpleNamespace(tid=9, tg=SimpleNamespace(pid=7, ppid=3),
                        creds=Creds(uid=1001, gid=1002, euid=1003, egid=1004, suid=1005,
                                    sgid=1006, fsuid=1007, fsgid=1008))
    answers = {}
    for nr in (39, 110, 186, 102, 104, 107, 108):
        answers[nr] = _fast(t, nr)  # type: ignore[arg-type]
        assert answers[nr] == call(t, nr), nr  # type: ignore[arg-type]
    assert answers == {39: 7, 110: 3, 186: 9, 102: 1001, 104: 1002, 107: 1003, 108: 1004}
