"""A VM made ahead (a template's spare run) and memory backed ahead (while the
kernel is built): taken only when it is the one wanted, and what they touch is
what a run would."""

from __future__ import annotations

import os
import socket

import pytest

from quark.core import vm
from quark.core.guest.layout import FIXED_END

pytestmark = pytest.mark.kvm


@pytest.fixture(autouse=True)
def _kvm() -> None:
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        pytest.skip("/dev/kvm is not usable here")


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("RssShmem:"))


def test_the_prepared_machine_is_taken_once_and_only_when_it_fits() -> None:
    vm.prepare(64 << 20, True, 8000)
    m = vm.take_prepared(64 << 20, True, 8000)
    assert m is not None and m.mem.size == 64 << 20 and m.qcall
    assert vm.take_prepared(64 << 20, True, 8000) is None      # once
    m.close()
    vm.prepare(64 << 20, True, 8000)
    assert vm.take_prepared(128 << 20, True, 8000) is None     # another size: closed
    assert vm.take_prepared(64 << 20, True, 8000) is None


def test_populate_backs_exactly_the_range() -> None:
    m = vm.Machine(64 << 20)
    used = m.alloc._next - FIXED_END                            # the machine's own tables
    before = _rss_kib()
    m.mem.populate_quietly(FIXED_END, 1 << 20)
    assert _rss_kib() - before == 1024 - used // 1024
    m.mem.populate_quietly(m.mem.size - 4096, 1 << 20)        # clipped at the end
    assert _rss_kib() - before == 1028 - used // 1024
    m.close()


def test_a_spare_makes_the_configured_machine_unless_its_request_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from quark.config import load_config
    from quark.template.server import Template
    monkeypatch.delenv("QUARK_SYSCALL_PATH", raising=False)
    k = load_config().kernel
    wanted = (k.memory_mib << 20, k.syscall_path == "qcall", k.qcall_spin)
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    Template._prepare_machine(b)
    m = vm.take_prepared(*wanted)
    assert m is not None
    m.close()
    a.send(b"request")
    Template._prepare_machine(b)
    assert vm.take_prepared(*wanted) is None
    a.close()
    b.close()
