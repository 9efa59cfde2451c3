"""Sockets, differentially: progs/unixsock.c and progs/inetsock.c (and busybox `ip`
over the NETLINK_ROUTE relay) natively in a chroot and under quark; stdout and exit
codes must match. The sandbox runs in the host's network namespace here, so the
programs use loopback only and print no port numbers or host-specific values."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from quark.tools.bundle import make_rootfs
from tests.guest.harness import (
    PROGS,
    Result,
    env_args,
    fresh_copy,
    populate,
    run_native,
)

pytestmark = pytest.mark.usefixtures("need_chroot")  # the differential cases run natively
CFLAGS = ("-Wall", "-I", str(PROGS))

# (argv, lines the native run must print: proves the expectations on this machine)
CASES = {
    "unixsock": (["/bin/unixsock"], (
        "recvmsg = 9 'take-this', msg_flags 0x40000000, cmsg SCM_RIGHTS",
        "pipe said 'via-pipe'",
        "send after peer exit = -1 EPIPE",
        "writer to a closed socket: killed by PIPE (shell: 141)",
        "S_ISSOCK = 1 mode 755",
        "bind same path again: EADDRINUSE",
        "client: exited 0",
        "connect to missing path: ENOENT",
        "recvfrom (short buffer) = 4",
        "recv keeps boundaries = 3",
        "bind abstract again: EADDRINUSE",
        "recv after peer close = 0",
        "socket AF_UNIX type 9 = -1 ESOCKTNOSUPPORT",
        "recv on a file = -1 ENOTSOCK",
        "socket bad family = -1 EAFNOSUPPORT")),
    "inetsock": (["/bin/inetsock"], (
        "echo 'hello'",
        "big echo: sent 200000 got 200000 equal 1",
        "echo server: exited 0",
        "recvmmsg = 3",
        "recv times out = -1 EAGAIN",
        "connect: EINPROGRESS",
        "SO_ERROR 0",
        "non-blocking refused: SO_ERROR ECONNREFUSED",
        "recv unconnected tcp = -1 ENOTCONN")),
    "ip-addr": (["/bin/ip", "addr"], ("    inet 127.0.0.1/8 scope host lo",)),
}


@pytest.fixture(scope="module")
def net_template(tmp_path_factory: pytest.TempPathFactory,
                 static_cc: Callable[..., Path]) -> Path:
    bins = [static_cc((PROGS / f"{n}.c").read_text(), n, flags=CFLAGS)
            for n in ("unixsock", "inetsock")]
    rootfs = tmp_path_factory.mktemp("net-template") / "rootfs"
    make_rootfs(rootfs, extra_binaries=bins)
    populate(rootfs)
    return rootfs


@pytest.mark.kvm
@pytest.mark.root
@pytest.mark.parametrize("name", sorted(CASES))
def test_net_differential(name: str, net_template: Path, tmp_path: Path,
                          quark_run: Callable[..., Result]) -> None:
    argv, must = CASES[name]
    native = run_native(fresh_copy(net_template, tmp_path / "native"), argv)
    missing = [m for m in must if m not in native.stdout.splitlines()]
    assert not missing, f"native run lacks {missing}:\n{native.stdout}"
    q = quark_run(fresh_copy(net_template, tmp_path / "quark"), argv, env=env_args(),
                  cwd="/", timeout=120)
    assert (q.code, q.stdout) == (native.code, native.stdout), \
        f"native {native.code}:\n{native.stdout}\nquark {q.code}:\n{q.stdout}\n{q.stderr[-3000:]}"


@pytest.mark.kvm
def test_netlink_is_read_only(net_template: Path, tmp_path: Path,
                              quark_run: Callable[..., Result]) -> None:
    """Unlike root under runc, the container cannot change links through quark's
    host sockets: RTM_NEWLINK is refused, then busybox's ioctl fallback too."""
    q = quark_run(fresh_copy(net_template, tmp_path / "quark"),
                  ["/bin/sh", "-c", "ip link set lo mtu 65536; echo rc=$?"], timeout=60)
    assert q.stdout == "rc=2\n", q.stderr
    assert "Operation not permitted" in q.stdout + q.stderr
