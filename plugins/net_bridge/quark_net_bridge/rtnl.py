"""The rtnetlink requests the bridge makes, through pyroute2's IPRoute.

pyroute2's package ``__init__`` imports its whole API (NDB, IPDB, conntrack,
ethtool, wireguard ...): ~90 ms and ~10 MiB of every networked sandbox's start, for
a dozen requests. ``_iproute()`` therefore registers the ``pyroute2`` package
without running that ``__init__`` and imports only ``pyroute2.iproute.linux``; the
first access to any other top-level name (``pyroute2.NDB`` ...) runs the real
``__init__``, so code that uses the full package elsewhere in the process still
gets it.

A netlink socket acts in the network namespace its creator thread was in when it
was made, so the caller makes one per namespace, after the setns.
"""

from __future__ import annotations

import errno
import importlib
import importlib.util
import os
import sys
import types
from typing import Any

_IFF_UP = 0x1


def _iproute() -> Any:
    """pyroute2's IPRoute class, without importing all of pyroute2."""
    if "pyroute2" not in sys.modules:
        spec = importlib.util.find_spec("pyroute2")
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            raise OSError("pyroute2 is not installed")
        pkg = types.ModuleType("pyroute2")
        pkg.__spec__ = spec
        pkg.__file__ = spec.origin
        pkg.__path__ = list(spec.submodule_search_locations)
        pkg.__package__ = "pyroute2"
        loader = spec.loader

        def load_all(name: str) -> Any:
            # A submodule (`from pyroute2 import config`) is imported as such; any
            # other name means someone wants the full package: run its __init__.
            if importlib.util.find_spec(f"pyroute2.{name}") is not None:
                return importlib.import_module(f"pyroute2.{name}")
            del pkg.__getattr__                 # type: ignore[attr-defined]
            loader.exec_module(pkg)
            return getattr(pkg, name)

        pkg.__getattr__ = load_all              # type: ignore[attr-defined]
        sys.modules["pyroute2"] = pkg
    from pyroute2.iproute.linux import IPRoute
    return IPRoute


class Rtnl:
    """One IPRoute socket; NetlinkError becomes OSError (errno kept)."""

    def __init__(self) -> None:
        self.ip = _iproute()()

    def __enter__(self) -> Rtnl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.ip.close()

    def _call(self, method: str, *args: Any, **kw: Any) -> Any:
        from pyroute2.netlink.exceptions import NetlinkError
        try:
            return getattr(self.ip, method)(*args, **kw)
        except NetlinkError as e:
            what = f"{method} {args[0]}" if args else method
            raise OSError(e.code, f"{what}: {os.strerror(e.code)}") from e

    def link_index(self, name: str) -> int | None:
        found = self._call("link_lookup", ifname=name)
        return int(found[0]) if found else None

    def link_info(self, name: str) -> tuple[int, str, int, bool] | None:
        """(index, MAC, MTU, up) of link ``name`` in one request; None if absent."""
        try:
            link = self._call("link", "get", ifname=name)[0]
        except OSError as e:
            if e.errno == errno.ENODEV:
                return None
            raise
        return (int(link["index"]), str(link.get_attr("IFLA_ADDRESS")),
                int(link.get_attr("IFLA_MTU")), bool(link["flags"] & _IFF_UP))

    def link_mac(self, index: int) -> str:
        link = self._call("get_links", index)[0]
        return str(link.get_attr("IFLA_ADDRESS"))

    def link_add(self, name: str, kind: str, peer: str | None = None, *,
                 peer_netns_fd: int | None = None, mtu: int | None = None) -> None:
        """``ip link add NAME [mtu MTU] type KIND [peer name PEER [mtu MTU] [netns FD]]``
        (bridge, veth). Making the peer in its namespace saves moving it there:
        a move waits for RCU grace periods, 15-35 ms here."""
        kw: dict[str, Any] = {"ifname": name, "kind": kind}
        if mtu is not None:
            kw["mtu"] = mtu
        if peer is not None:
            p: dict[str, Any] = {"ifname": peer}
            if mtu is not None:
                p["mtu"] = mtu
            if peer_netns_fd is not None:
                p["net_ns_fd"] = peer_netns_fd
            kw["peer"] = p
        self._call("link", "add", **kw)

    def link_set(self, index: int, *, up: bool = False, mtu: int | None = None,
                 master: int | None = None, netns_fd: int | None = None,
                 ifname: str | None = None) -> None:
        """``ip link set``: bring it up, set the MTU, the bridge, the namespace, the name."""
        kw: dict[str, Any] = {"index": index}
        if up:
            kw["state"] = "up"
        if ifname is not None:
            kw["ifname"] = ifname
        if mtu is not None:
            kw["mtu"] = mtu
        if master is not None:
            kw["master"] = master
        if netns_fd is not None:
            kw["net_ns_fd"] = netns_fd
        self._call("link", "set", **kw)

    def link_del(self, index: int) -> None:
        self._call("link", "del", index=index)

    def addresses(self, index: int) -> set[str]:
        """The IPv4 addresses on link ``index``."""
        return {str(a.get_attr("IFA_ADDRESS"))
                for a in self._call("get_addr", family=2, index=index)}

    def addr_add(self, index: int, address: str, prefixlen: int) -> None:
        self._call("addr", "add", index=index, address=address, prefixlen=prefixlen)

    def default_route(self, gateway: str) -> None:
        """``ip route add default via GATEWAY``."""
        self._call("route", "add", dst="0.0.0.0/0", gateway=gateway)
