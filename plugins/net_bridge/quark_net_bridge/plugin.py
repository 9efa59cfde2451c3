"""The net_bridge plugin: what the CNI ``bridge`` + ``host-local`` plugins do, in-process.

For a sandbox whose config.json asks for a new network namespace (Quark has just
made it, loopback up), on the host side:
- a bridge (``quark0``) holding the gateway address (``10.88.0.1/16``), made once;
- a veth pair per sandbox: ``qb<hash>`` on the bridge, its peer made in the
  sandbox's namespace as ``eth0``, with the leased address and a default
  route through the gateway;
- IPv4 forwarding on, masquerade for the subnet (nat.py), and published ports
  (annotation ``org.quark.net_bridge.ports = "8080:80,53:53/udp"``) as DNAT.
The addresses are private to this machine's namespaces: the outside world sees the
host's address (masquerade).

Under a template (quark.template), the wiring is done ahead: each worker the template
forks for its next run makes a namespace and wires it with a lease of its own
(``quark_network_prepare``: ~15 ms of netlink, off the run's path), and the run adopts
it (``quark_network_adopt``): the lease passes to the sandbox's id, and the run
enters that namespace. A worker whose run does not claim it releases both.

It stays out when config.json names a namespace (podman, containerd or Kubernetes
made and configured it): Quark calls ``quark_network_setup`` only for namespaces it
creates, and this plugin checks again. Quark also leaves out a namespace it creates
for ``quark create`` (what those clients call: there a new namespace means
``--network=none``) unless annotation ``org.quark.network = "plugins"`` asks, and
one whose annotation says ``"none"`` (quark.oci.spec.wire_network_default).

Settings, ``[net_bridge]`` in /etc/quark/config.toml (all optional):
``bridge = "quark0"``, ``subnet = "10.88.0.0/16"``, ``gateway`` (first address),
``lease_dir = "/var/lib/quark/net_bridge"``, ``masquerade = true``, ``mtu = 1500``,
``nameservers = []`` (reported in the CNI result's ``dns``).
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import json
import logging
import os
import socket
import sys
import threading
from collections.abc import Callable
from typing import Any

from quark.oci.spec import network_entry
from quark.plugins import hookimpl

from . import __version__
from .ipam import LeaseError, Leases, pid_start_time
from .nat import Nat, NatError, backend, parse_ports
from .rtnl import Rtnl

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


def _nat(conf: dict[str, Any]) -> Nat:
    return Nat(conf["bridge"], str(ipaddress.ip_network(conf["subnet"], strict=False)))


def _ports(spec: Any) -> list[tuple[int, int, str]]:
    annotations = getattr(spec, "annotations", None) or {}
    return parse_ports(annotations.get(PORTS_ANNOTATION, ""))


def _leases(conf: dict[str, Any]) -> Leases:
    return Leases(conf["lease_dir"], conf["subnet"], conf["gateway"] or None)


def _info(ip: Rtnl, name: str) -> tuple[int, str, int, bool]:
    info = ip.link_info(name)
    if info is None:
        raise OSError(f"link {name} vanished")
    return info


def _ensure_bridge(ip: Rtnl, conf: dict[str, Any], leases: Leases) -> int:
    # Sandboxes starting together may race to make the bridge and its address
    # (the links are made outside the lease lock): EEXIST means another won.
    # Each netlink request is ~0.4 ms of Python here: one `get` tells whether the
    # bridge needs anything.
    name = conf["bridge"]
    info = ip.link_info(name)
    if info is None:
        try:
            ip.link_add(name, "bridge")
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
        info = _info(ip, name)
    idx, _mac, mtu, up = info
    if str(leases.gateway) not in ip.addresses(idx):
        try:
            ip.addr_add(idx, str(leases.gateway), leases.net.prefixlen)
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise
    if not up or mtu != conf["mtu"]:
        ip.link_set(idx, up=True, mtu=conf["mtu"])
    return idx


class _Helper:
    """``fn(*args)`` beside the sandbox's own start-up work: :meth:`result` is its
    JSON-able return value, or its OSError raised here.

    pyroute2, even its IPRoute alone, adds ~10 MiB and ~40 ms of imports to the
    process that loads it, which the sandbox (which lives as long as the
    container) should never carry. A run forked from a template (quark.template),
    and a foreground run without one (it forks its worker before its own imports:
    quark.template.worker.start), hand ``fn`` to that worker process, which has
    pyroute2 loaded: no fork of the run at this point (~5 ms, plus the copies of
    every page either side writes afterwards), and no competition for the run's GIL
    as a thread would have. Otherwise (``quark create``, a dead worker) ``fn`` runs
    in a child forked now, or in a thread if pyroute2 is loaded here anyway.
    ``thread=True`` asks for a thread whatever is loaded (work that mostly waits,
    like the firewall's commands)."""

    def __init__(self, fn: Callable[..., Any], *args: Any, thread: bool = False,
                 fd_arg: int | None = None) -> None:
        # Only a sandbox that has a worker has imported its module.
        worker = sys.modules.get("quark.template.worker")
        self.thread: threading.Thread | None = None
        self.job: Any = None
        if not thread and worker is not None and worker.available():
            # A template's run, or a run that forked its worker early: that warm
            # process (fd_arg: the argument that is an fd, passed along). A worker
            # that is gone leaves it to this process.
            try:
                self.job = worker.submit(fn, args, {fd_arg: args[fd_arg]}
                                         if fd_arg is not None else None)
                return
            except OSError as e:
                log.warning("net_bridge: the template's worker: %s; wiring in this process", e)
                worker.release()
        if thread or "pyroute2.iproute.linux" in sys.modules:
            self.out: dict[str, Any] = {}
            self.thread = threading.Thread(target=self._call, args=(fn, args),
                                           name="net_bridge", daemon=True)
            self.thread.start()
            return
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.close(r)
                data = json.dumps(self._outcome(fn, args)).encode()
                while data:
                    data = data[os.write(w, data):]
            except BaseException:   # noqa: BLE001 - never return into the parent's code
                code = 1
            finally:
                os._exit(code)
        os.close(w)
        self.pid, self.fd = pid, r

    @staticmethod
    def _outcome(fn: Callable[..., Any], args: tuple[Any, ...]) -> dict[str, Any]:
        try:
            return {"result": fn(*args)}
        except OSError as e:
            return {"errno": e.errno or 0, "error": e.strerror or str(e)}
        except Exception as e:  # noqa: BLE001 - reported to the caller, one line
            return {"errno": 0, "error": f"{type(e).__name__}: {e}"}

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.out = self._outcome(fn, args)

    def result(self) -> Any:
        if self.job is not None:
            return self.job.result()
        if self.thread is not None:
            self.thread.join()
            out = self.out
        else:
            chunks = []
            with os.fdopen(self.fd, "rb") as f:
                while chunk := f.read(65536):
                    chunks.append(chunk)
            _, status = os.waitpid(self.pid, 0)
            try:
                out = json.loads(b"".join(chunks))
            except ValueError:
                raise OSError(f"network helper process died (wait status {status:#x})"
                              ) from None
        if "error" in out:
            raise OSError(out["error"])
        return out["result"]


def _cni_result(conf: dict[str, Any], leases: Leases, addr: str, host_if: str,
                macs: list[str]) -> dict[str, Any]:
    host_mac, br_mac, eth_mac = macs
    return {
        "cniVersion": CNI_VERSION,
        "interfaces": [
            {"name": conf["bridge"], "mac": br_mac},
            {"name": host_if, "mac": host_mac},
            {"name": "eth0", "mac": eth_mac, "sandbox": f"/proc/{os.getpid()}/ns/net"},
        ],
        "ips": [{"address": f"{addr}/{leases.net.prefixlen}",
                 "gateway": str(leases.gateway), "interface": 2}],
        "routes": [{"dst": "0.0.0.0/0", "gw": str(leases.gateway)}],
        "dns": {"nameservers": list(conf["nameservers"])},
    }


def _delete_link(name: str) -> None:
    with Rtnl() as ip:
        idx = ip.link_index(name)
        if idx is not None:
            try:
                ip.link_del(idx)
            except OSError as e:    # gone meanwhile (its netns died)
                log.debug("deleting %s: %s", name, e)


def _remove_links(name: str) -> None:
    try:
        socket.if_nametoindex(name)     # an ioctl in this thread's namespace
    except OSError:
        return      # not here: gone with its namespace, or we are in the sandbox's
    _Helper(_delete_link, name).result()


def _setns(fd: int) -> None:
    from quark.sandbox import netns_ffi
    netns_ffi.setns(fd, netns_ffi.CLONE_NEWNET)


def _forwarding_on() -> None:
    with open("/proc/sys/net/ipv4/ip_forward", "w") as f:
        f.write("1")


def _release(leases: Leases, nat: Nat | None, sandbox_id: str) -> None:
    """Under the lease lock: everything of one sandbox that outlives its process."""
    lease = leases.release(sandbox_id)
    # A lease names its veth: one wired ahead (quark_network_prepare) is not named
    # after the sandbox.
    _remove_links(str((lease or {}).get("veth") or veth_name(sandbox_id)))
    # Only published ports give a sandbox rules of its own (the masquerade is the
    # bridge's), and looking for them lists two firewall tables (~10 ms): skip that
    # when its lease says it published none. Without a lease, look.
    if nat is not None and nat.kind and (lease is None or lease.get("ports", True)):
        nat.unpublish(sandbox_id)


def _allocate(leases: Leases, nat: Nat, key: str, conf: dict[str, Any], host_if: str,
              ports: list[tuple[int, int, str]]) -> Any:
    """``key``'s address, leased to this process with its veth and ports, after
    the stale leases are reaped (under the lease lock)."""
    pid = os.getpid()
    with leases.locked():
        _reap(leases, nat)
        return leases.allocate(key, pid=pid, pid_start=pid_start_time(pid), veth=host_if,
                               bridge=conf["bridge"], ports=[list(p) for p in ports])


def _reap(leases: Leases, nat: Nat | None) -> None:
    for sid in leases.stale():
        log.info("net_bridge: releasing the stale lease of %s", sid)
        _release(leases, nat, sid)


def _firewall(conf: dict[str, Any], leases: Leases, nat: Nat, sandbox_id: str, addr: str,
              ports: list[tuple[int, int, str]]) -> None:
    """The host firewall's part of one sandbox (beside the wiring of its links):
    forwarding, the bridge's masquerade, the sandbox's published ports; and the
    rules of sandboxes that have no lease any more (a foreground run whose teardown
    could not reach the host's firewall)."""
    with leases.locked(save=False):     # the firewall, one sandbox at a time
        _forwarding_on()
        if nat.kind:
            for sid in nat.tagged_ids() - set(leases.data):
                nat.unpublish(sid)
        if conf["masquerade"]:
            nat.ensure_masquerade()
        if ports:
            nat.publish(sandbox_id, addr, ports)


def _wire(netns: int, host_if: str, conf: dict[str, Any], leases: Leases,
          addr: str) -> list[str]:
    """The links of one sandbox (run by a _Helper; closes ``netns``): its veth on
    the bridge, eth0 in its namespace with the address and
    the default route. Returns the MACs of the host end, the bridge and eth0."""
    try:
        with Rtnl() as ip:
            br = _ensure_bridge(ip, conf, leases)
            # The peer is born in the sandbox's namespace, as eth0 (the namespace is
            # new: nothing else has the name).
            try:
                ip.link_add(host_if, "veth", peer="eth0", peer_netns_fd=netns,
                            mtu=conf["mtu"])
            except OSError as e:
                if e.errno != errno.EEXIST:
                    raise
                ip.link_del(_info(ip, host_if)[0])      # left by a sandbox that crashed
                ip.link_add(host_if, "veth", peer="eth0", peer_netns_fd=netns,
                            mtu=conf["mtu"])
            hidx, host_mac, _, _ = _info(ip, host_if)
            ip.link_set(hidx, master=br, mtu=conf["mtu"], up=True)
            br_mac = ip.link_mac(br)    # after: a bridge takes its ports' lowest MAC
        # A netlink socket acts in the namespace it was made in: make the container's
        # one there (this helper, a child or a thread, never goes back).
        _setns(netns)
        with Rtnl() as ip:
            pidx, eth_mac, _, _ = _info(ip, "eth0")
            ip.addr_add(pidx, addr, leases.net.prefixlen)
            ip.link_set(pidx, up=True)
            ip.default_route(str(leases.gateway))
    finally:
        os.close(netns)
    return [host_mac, br_mac, eth_mac]


@hookimpl
def quark_network_setup(spec: Any, netns_path: str,
                        sandbox_id: str) -> Callable[[], dict[str, Any]] | None:
    entry = network_entry(spec)
    if entry is None or entry.path:
        return None                 # host network, or a namespace someone else made
    conf = settings()
    ports = _ports(spec)
    nat = _nat(conf)
    host_if = veth_name(sandbox_id)
    leases = _leases(conf)
    try:
        addr = _allocate(leases, nat, sandbox_id, conf, host_if, ports)
        # The links are made by a _Helper (the worker, a child or a thread) while the
        # sandbox builds its VM; it gets the namespace fd (netns_path is valid only
        # during this call).
        netns = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            helper = _Helper(_wire, netns, host_if, conf, leases, str(addr), fd_arg=0)
        except BaseException:
            os.close(netns)
            raise
        if helper.thread is None:
            os.close(netns)     # the child has its copy; a thread's _wire closes this one
        firewall = _Helper(_firewall, conf, leases, nat, sandbox_id, str(addr), ports,
                           thread=True)
    except (LeaseError, OSError, ValueError) as e:
        raise BridgeError(f"net_bridge: {e}") from e

    def finish() -> dict[str, Any]:
        try:
            # Both are collected (no zombie) before either's failure is raised.
            outcomes: list[Any] = []
            for h in (helper, firewall):
                try:
                    outcomes.append(h.result())
                except (LeaseError, NatError, OSError, ValueError) as e:
                    outcomes.append(e)
            for o in outcomes:
                if isinstance(o, Exception):
                    raise o
        except (LeaseError, NatError, OSError, ValueError) as e:
            raise BridgeError(f"net_bridge: {e}") from e
        return _cni_result(conf, leases, str(addr), host_if, outcomes[0])
    return finish


# ---- wired ahead, under a template

# In a template's worker: the namespace quark_network_prepare wired, until its run
# claims it ({"key", "conf", "addr", "host_if", "macs", "netns"}).
_spare: dict[str, Any] | None = None


@hookimpl
def quark_network_prepare() -> None:
    global _spare
    if os.geteuid() != 0:
        return      # the wiring needs root (a rootless template's runs do it themselves)
    from quark.sandbox import netns as qnetns
    from quark.template import worker

    conf = settings()
    nat = _nat(conf)
    leases = _leases(conf)
    # Not an OCI id (':' is not allowed in one): it cannot meet a container's lease.
    key = f"spare:{os.getpid()}"
    host_if = "qb" + os.urandom(6).hex()[:11]
    addr = _allocate(leases, nat, key, conf, host_if, [])
    spare: dict[str, Any] = {"key": key, "conf": conf, "addr": str(addr),
                             "host_if": host_if, "netns": -1}
    _spare = spare
    worker.at_exit(_unprepare)
    spare["netns"] = qnetns.prepare()
    spare["macs"] = _wire(os.dup(spare["netns"]), host_if, conf, leases, str(addr))


def _unprepare() -> None:
    """The worker ends and no run claimed its namespace: the namespace goes (this
    was its only holder; the kernel deletes the veth pair with it) and so does the
    lease."""
    global _spare
    spare, _spare = _spare, None
    if spare is None:
        return
    if spare["netns"] >= 0:
        os.close(spare["netns"])
    leases = _leases(spare["conf"])
    with leases.locked():
        leases.release(spare["key"])


def _claim(sandbox_id: str, pid: int, pid_start: int | None, conf: dict[str, Any],
           ports: list[tuple[int, int, str]]) -> Any:
    """In the worker, for its run: the namespace wired ahead, now the sandbox's
    (WithFds(info, [its fd])); None when there is none that fits (the run then
    wires one the usual way)."""
    global _spare
    from quark.template.worker import WithFds

    spare = _spare
    if spare is None or "macs" not in spare or spare["conf"] != conf:
        return None
    leases = _leases(conf)
    with leases.locked():
        if sandbox_id in leases.data:
            return None     # a lease of this id already (another state root's run?)
        lease = leases.data.pop(spare["key"], None)
        if lease is None:
            return None
        lease.update(pid=pid, pid_start=pid_start, ports=[list(p) for p in ports])
        leases.data[sandbox_id] = lease
    _spare = None
    info = {k: spare[k] for k in ("addr", "host_if", "macs")}
    return WithFds(info, [spare["netns"]])


@hookimpl
def quark_network_adopt(spec: Any, sandbox_id: str
                        ) -> tuple[int, Callable[[], dict[str, Any]]] | None:
    entry = network_entry(spec)
    worker = sys.modules.get("quark.template.worker")
    if entry is None or entry.path or worker is None or not worker.available() \
            or worker.early:
        return None         # no template's worker: nothing was wired ahead
    conf = settings()
    ports = _ports(spec)
    pid = os.getpid()
    try:
        got = worker.submit(_claim, (sandbox_id, pid, pid_start_time(pid), conf, ports)
                            ).result()
    except OSError as e:
        log.debug("net_bridge: no namespace wired ahead: %s", e)
        return None
    if got is None:
        return None
    info, (fd,) = got
    log.info("net_bridge: adopted the namespace wired ahead (%s, %s)", info["host_if"],
             info["addr"])
    leases = _leases(conf)
    nat = _nat(conf)
    try:
        # In the worker too (its next job), while this run builds its VM.
        firewall = _Helper(_firewall, conf, leases, nat, sandbox_id, info["addr"], ports)
    except BaseException:
        os.close(fd)
        raise

    def finish() -> dict[str, Any]:
        try:
            firewall.result()
        except (LeaseError, NatError, OSError, ValueError) as e:
            raise BridgeError(f"net_bridge: {e}") from e
        return _cni_result(conf, leases, info["addr"], info["host_if"], info["macs"])
    return fd, finish


@hookimpl
def quark_network_teardown(sandbox_id: str) -> None:
    conf = settings()
    leases = _leases(conf)
    if not leases.path.exists():
        return
    nat = _nat(conf)
    with leases.locked():
        _release(leases, nat, sandbox_id)


@hookimpl
def quark_preload(where: str) -> None:
    # Runs need nothing more than this module: the wiring happens in the template's
    # workers. There, pyroute2's IPRoute (~40 ms to import, ~5 MiB that every run
    # would carry if the template held it) and one request: pyroute2 sets up much of
    # itself on first use (5-10 ms of a first wiring), which the workers then share.
    if where == "worker":
        with Rtnl() as ip:
            ip.link_info("lo")


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
