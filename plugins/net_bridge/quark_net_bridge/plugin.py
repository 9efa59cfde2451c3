"""The net_bridge plugin: what the CNI ``bridge`` + ``host-local`` plugins do, in-process.

For a sandbox whose config.json asks for a new network namespace (Quark has just
made it, loopback up), on the host side:
- a bridge (``quark0``) holding the gateway address (``10.88.0.1/16``), made once;
- a veth pair per sandbox: ``qb<hash>`` on the bridge, its peer moved into the
  sandbox's namespace and renamed ``eth0``, with the leased address and a default
  route through the gateway;
- IPv4 forwarding on, masquerade for the subnet (nat.py), and published ports
  (annotation ``org.quark.net_bridge.ports = "8080:80,53:53/udp"``) as DNAT.
The addresses are private to this machine's namespaces: the outside world sees the
host's address (masquerade).

It stays out when config.json names a namespace (podman, containerd or Kubernetes
made and configured it): Quark calls ``quark_network_setup`` only for namespaces it
creates, and this plugin checks again.

Settings, ``[net_bridge]`` in /etc/quark/config.toml (all optional):
``bridge = "quark0"``, ``subnet = "10.88.0.0/16"``, ``gateway`` (first address),
``lease_dir = "/var/lib/quark/net_bridge"``, ``masquerade = true``, ``mtu = 1500``,
``nameservers = []`` (reported in the CNI result's ``dns``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import os
from typing import Any

from quark.plugins import hookimpl

from . import __version__
from .ipam import LeaseError, Leases, pid_start_time
from .nat import Nat, NatError, backend, parse_ports

log = logging.getLogger("quark.plugins.net_bridge")

CNI_VERSION = "1.0.0"
PORTS_ANNOTATION = "org.quark.net_bridge.ports"
DEFAULTS: dict[str, Any] = {
    "bridge": "quark0", "subnet": "10.88.0.0/16", "gateway": "",
    "lease_dir": "/var/lib/quark/net_bridge", "masquerade": True, "mtu": 1500,
    "nameservers": [],
}


class BridgeError(Exception):
    pass


def settings() -> dict[str, Any]:
    from quark.plugins.manager import plugin_config
    conf = dict(DEFAULTS)
    extra = plugin_config("net_bridge")
    unknown = set(extra) - set(DEFAULTS)
    if unknown:
        raise BridgeError(f"[net_bridge]: unknown key(s) {', '.join(sorted(unknown))}")
    conf.update(extra)
    return conf


def veth_name(sandbox_id: str) -> str:
    """The host end's name: IFNAMSIZ allows 15 characters, ids are longer."""
    return "qb" + hashlib.sha256(sandbox_id.encode()).hexdigest()[:11]


def _leases(conf: dict[str, Any]) -> Leases:
    return Leases(conf["lease_dir"], conf["subnet"], conf["gateway"] or None)


def _ensure_bridge(ip: Any, conf: dict[str, Any], leases: Leases) -> int:
    name = conf["bridge"]
    found = ip.link_lookup(ifname=name)
    if not found:
        ip.link("add", ifname=name, kind="bridge")
        found = ip.link_lookup(ifname=name)
    idx = found[0]
    have = {a.get_attr("IFA_ADDRESS") for a in ip.get_addr(index=idx)}
    if str(leases.gateway) not in have:
        ip.addr("add", index=idx, address=str(leases.gateway), prefixlen=leases.net.prefixlen)
    ip.link("set", index=idx, state="up", mtu=conf["mtu"])
    return int(idx)


def _remove_links(sandbox_id: str) -> None:
    from pyroute2 import IPRoute
    with IPRoute() as ip:
        for idx in ip.link_lookup(ifname=veth_name(sandbox_id)):
            try:
                ip.link("del", index=idx)
            except Exception as e:  # noqa: BLE001 - gone meanwhile (its netns died)
                log.debug("deleting %s: %s", veth_name(sandbox_id), e)


def _forwarding_on() -> None:
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")


def _release(leases: Leases, nat: Nat | None, sandbox_id: str) -> None:
    """Under the lease lock: everything of one sandbox that outlives its process."""
    leases.release(sandbox_id)
    _remove_links(sandbox_id)
    if nat is not None and nat.kind:
        nat.unpublish(sandbox_id)


def _reap(leases: Leases, nat: Nat | None) -> None:
    for sid in leases.stale():
        log.info("net_bridge: releasing the stale lease of %s", sid)
        _release(leases, nat, sid)
    if nat is not None and nat.kind:
        for sid in nat.tagged_ids() - set(leases.data):
            nat.unpublish(sid)


@hookimpl
def quark_network_setup(spec: Any, netns_path: str, sandbox_id: str) -> dict[str, Any] | None:
    entry = next((n for n in getattr(spec, "namespaces", ()) if n.type == "network"), None)
    if entry is None or entry.path:
        return None                 # host network, or a namespace someone else made
    from pyroute2 import IPRoute
    from pyroute2 import netns as pyroute2_netns

    conf = settings()
    annotations = getattr(spec, "annotations", None) or {}
    ports = parse_ports(annotations.get(PORTS_ANNOTATION, ""))
    nat = Nat(conf["bridge"], str(ipaddress.ip_network(conf["subnet"], strict=False)))
    host_if, peer_tmp = veth_name(sandbox_id), "qp" + veth_name(sandbox_id)[2:]
    pid = os.getpid()
    leases = _leases(conf)
    try:
        with leases.locked():
            _reap(leases, nat)
            addr = leases.allocate(sandbox_id, pid=pid, pid_start=pid_start_time(pid),
                                   veth=host_if, bridge=conf["bridge"],
                                   ports=[list(p) for p in ports])
            with IPRoute() as ip:
                br = _ensure_bridge(ip, conf, leases)
                for stale in ip.link_lookup(ifname=host_if):
                    ip.link("del", index=stale)
                ip.link("add", ifname=host_if, kind="veth", peer={"ifname": peer_tmp})
                hidx = ip.link_lookup(ifname=host_if)[0]
                ip.link("set", index=hidx, master=br, mtu=conf["mtu"], state="up")
                pidx = ip.link_lookup(ifname=peer_tmp)[0]
                ip.link("set", index=pidx, net_ns_fd=netns_path)
                host_mac = ip.get_links(hidx)[0].get_attr("IFLA_ADDRESS")
                br_mac = ip.get_links(br)[0].get_attr("IFLA_ADDRESS")
            pyroute2_netns.pushns(netns_path)
            try:
                with IPRoute() as ip:
                    pidx = ip.link_lookup(ifname=peer_tmp)[0]
                    ip.link("set", index=pidx, ifname="eth0", mtu=conf["mtu"])
                    ip.addr("add", index=pidx, address=str(addr),
                            prefixlen=leases.net.prefixlen)
                    ip.link("set", index=pidx, state="up")
                    ip.route("add", dst="0.0.0.0/0", gateway=str(leases.gateway))
                    eth_mac = ip.get_links(pidx)[0].get_attr("IFLA_ADDRESS")
            finally:
                pyroute2_netns.popns()
            _forwarding_on()
            if conf["masquerade"]:
                nat.ensure_masquerade()
            if ports:
                nat.publish(sandbox_id, str(addr), ports)
    except (LeaseError, NatError, OSError, ValueError) as e:
        raise BridgeError(f"net_bridge: {e}") from e
    return {
        "cniVersion": CNI_VERSION,
        "interfaces": [
            {"name": conf["bridge"], "mac": br_mac},
            {"name": host_if, "mac": host_mac},
            {"name": "eth0", "mac": eth_mac, "sandbox": f"/proc/{pid}/ns/net"},
        ],
        "ips": [{"address": f"{addr}/{leases.net.prefixlen}", "gateway": str(leases.gateway),
                 "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0", "gw": str(leases.gateway)}],
        "dns": {"nameservers": list(conf["nameservers"])},
    }


@hookimpl
def quark_network_teardown(sandbox_id: str) -> None:
    conf = settings()
    leases = _leases(conf)
    if not leases.path.exists():
        return
    nat = Nat(conf["bridge"], str(leases.net))
    with leases.locked():
        _release(leases, nat, sandbox_id)


@hookimpl
def quark_plugin_status() -> str:
    try:
        conf = settings()
    except BridgeError as e:
        return str(e)
    n = 0
    leases = _leases(conf)
    if leases.path.exists():
        with leases.locked():
            n = len(leases.data)
    return (f"v{__version__}: bridge {conf['bridge']}, subnet {conf['subnet']}, "
            f"{n} lease(s) in {leases.path}, firewall: {backend() or 'none'}")
