"""The plugin manager: loading rules, the zero-cost syscall observer, strace output."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest

from quark.config import Config, KernelConfig
from quark.kernel.syscalls.args import SyscallArgs
from quark.plugins import hookimpl
from quark.plugins.builtin.strace import StracePlugin
from quark.plugins.manager import make_manager


def test_no_observer_without_implementations(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARK_PLUGINS", "none")
    pm = make_manager(Config())
    assert pm.infos == [] and pm.syscall_observer() is None


def test_strace_is_a_builtin_observer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARK_PLUGINS", "none")
    pm = make_manager(Config(kernel=KernelConfig(strace=True)))
    assert [i.name for i in pm.infos] == ["strace"] and pm.infos[0].builtin
    obs = pm.syscall_observer()
    assert obs is not None and obs.exit is not None


def test_observer_errors_do_not_escape(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUARK_PLUGINS", "none")
    pm = make_manager(Config())

    class Bad:
        @hookimpl
        def quark_syscall_enter(self, nr: int) -> None:
            raise RuntimeError("boom")

    pm.register(Bad())
    obs = pm.syscall_observer()
    assert obs is not None and obs.exit is None and obs.enter is not None
    obs.enter(None, 39, None)       # logged, not raised


class FakeMm:
    def __init__(self, mem: dict[int, bytes]) -> None:
        self.mem = mem

    def read_cstr(self, addr: int, limit: int = 4096) -> bytes:
        return self.mem[addr].split(b"\0")[0]

    def read(self, addr: int, n: int) -> bytes:
        return self.mem[addr][:n]


def _trace(nr: int, raw: list[int], result: int, mem: dict[int, bytes] | None = None) -> str:
    out = io.StringIO()
    p = StracePlugin(out)
    t: Any = SimpleNamespace(tid=7, mm=FakeMm(mem or {}))
    args = SyscallArgs(nr, tuple(raw + [0] * (6 - len(raw))))  # type: ignore[arg-type]
    p.quark_syscall_enter(t, nr, args)
    p.quark_syscall_exit(t, nr, args, result)
    return out.getvalue()


def test_strace_decodes_by_type() -> None:
    m = 1 << 64
    assert _trace(257, [m - 100, 0x1000, 0o2000000, 0], 3, {0x1000: b"/etc/passwd\0"}) == \
        '[pid 7] openat(AT_FDCWD, "/etc/passwd", O_RDONLY|O_CLOEXEC, 00) = 3\n'
    assert _trace(2, [0x1000, 0o101, 0o644], -2, {0x1000: b"/x\0"}) == \
        '[pid 7] open("/x", O_WRONLY|O_CREAT, 0644) = -1 ENOENT (No such file or directory)\n'
    assert _trace(9, [0, 4096, 3, 0x22, m - 1, 0], 0x7f0000000000) == \
        "[pid 7] mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0x0)" \
        " = 0x7f0000000000\n"
    assert _trace(56, [0x1200011, 0, 0, 0x5000, 0], 5).startswith(
        "[pid 7] clone(CLONE_CHILD_CLEARTID|CLONE_CHILD_SETTID|SIGCHLD, NULL")
    assert _trace(1, [1, 0x2000, 3], 3, {0x2000: b"hi\n"}) == \
        '[pid 7] write(1, "hi\\n", 3) = 3\n'
    assert _trace(41, [2, 0o2000001, 0], 4) == \
        "[pid 7] socket(AF_INET, SOCK_STREAM|SOCK_CLOEXEC, 0) = 4\n"
