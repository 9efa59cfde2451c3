"""The sandbox process's network namespace: where the guest's sockets live.

Guest sockets are host sockets the sandbox process opens with ``socket()``, so the
process itself must sit in the container's network namespace. config.json decides,
as for runc:
- ``linux.namespaces`` has ``{"type": "network", "path": P}``: join P (podman,
  containerd or a CNI plugin made and configured it);
- a ``network`` entry without a path: a new, empty namespace with loopback up, which
  the ``quark_network_setup`` plugins (e.g. net_bridge) then wire to the host; or,
  in a template's run, one a plugin wired ahead and hands over
  (``quark_network_adopt``). Unless ``spec.wire_network`` is False (``create``,
  what OCI clients call, and annotation ``org.quark.network = "none"``): then it
  stays empty, as runc leaves it (quark.oci.spec.wire_network_default);
- no ``network`` entry: stay in the caller's namespace.

Some facts this rests on:
- setns(2)/unshare(2) with CLONE_NEWNET change only the calling *thread*; a thread
  inherits its creator's namespace when created. So this runs first in the sandbox
  process, on the main thread, before the VM's vCPU threads, the timekeeper or the
  QCall poller exist; every later thread is born inside.
- The new namespace is anonymous: it lives as long as some thread is in it (no
  bind mount under /run/netns), so a sandbox that crashes or is SIGKILLed takes it
  and the container end of its veth with it; the host end of a veth pair dies with
  its peer. What outlives the process (leases, NAT rules) is the plugins' to release
  in ``quark_network_teardown``, which ``quark delete`` calls.
- The setup hooks run back in the caller's namespace, where the bridge is; we hold
  fds to both namespaces only during that call and close them after: the sandbox
  keeps no way back to the host's network. (A template's run holds the new
  namespace's fd from before its request, and no fd of the host's.)
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from typing import Any

from quark.oci.spec import network_entry

from . import netns_ffi

log = logging.getLogger("quark.sandbox")


class NetnsError(Exception):
    """The network namespace could not be entered or set up (one line)."""


@dataclass
class NetworkState:
    """How the sandbox got its network: ``mode`` is "host", "joined" or "created";
    ``results`` are the CNI results of the setup plugins (created only)."""

    mode: str
    path: str | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    pending: list[Any] = field(default_factory=list)    # set-ups still finishing

    def finish(self) -> None:
        """Wait for the set-ups plugins continue in the background (see the
        quark_network_setup hookspec); raises NetnsError if one failed."""
        pending, self.pending = self.pending, []
        failed: Exception | None = None
        for done in pending:
            try:
                r = done()
            except Exception as e:  # noqa: BLE001 - every pending one is settled
                failed = failed or e
                continue
            if r:
                self.results.append(r)
                _log_result(r)
        if failed is not None:
            raise NetnsError(f"network setup: {failed}") from failed

    def settle(self) -> None:
        """finish(), ignoring failures: the start failed anyway (teardown follows)."""
        try:
            self.finish()
        except NetnsError:
            pass


def _open_ns(path: str) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def loopback_up() -> None:
    """``ip link set lo up`` in the calling thread's namespace."""
    netns_ffi.link_up("lo")


def enter(spec: Any, plugins: Any) -> NetworkState:
    """Put this process (its main thread, before any other exists) in the
    container's network namespace; raises NetnsError."""
    global prepared
    entry = network_entry(spec)
    if prepared is not None and (entry is None or entry.path):
        os.close(prepared)          # a template's spare: not wanted by this run
        prepared = None
    if entry is None:
        return NetworkState("host")
    if threading.active_count() != 1 or threading.current_thread() is not threading.main_thread():
        raise NetnsError("the network namespace must be entered before any thread starts")
    if entry.path:
        try:
            fd = _open_ns(entry.path)
            try:
                netns_ffi.setns(fd, netns_ffi.CLONE_NEWNET)
            finally:
                os.close(fd)
        except OSError as e:
            raise NetnsError(f"joining network namespace {entry.path}: "
                             f"{(e.strerror or str(e)).lower()}") from e
        return NetworkState("joined", entry.path)
    return _create(spec, plugins if spec.wire_network else None)


# A template's run (quark.template): a namespace it made with prepare() while it
# waited for its request. Creating one costs ~5 ms here (the kernel initialises
# every per-namespace subsystem), off the run's path when done ahead.
prepared: int | None = None


def prepare() -> int:
    """A new, empty network namespace with lo up, made without staying in it; its
    fd. For a template, which makes them ahead of its runs."""
    host = _open_ns("/proc/thread-self/ns/net")
    try:
        netns_ffi.unshare(netns_ffi.CLONE_NEWNET)
        try:
            fd = _open_ns("/proc/thread-self/ns/net")
            loopback_up()
            return fd
        finally:
            netns_ffi.setns(host, netns_ffi.CLONE_NEWNET)
    finally:
        os.close(host)


def _create(spec: Any, plugins: Any) -> NetworkState:
    """A new namespace (one a plugin wired ahead, a template's spare, else one made
    now), set up by the plugins from the host's namespace, then entered."""
    global prepared
    new, prepared = prepared, None
    adopted = _adopt(spec, plugins)
    if adopted is not None:
        if new is not None:
            os.close(new)               # the template's empty spare: not needed
        skip, new, result = adopted
    else:
        skip, result = None, None
    if new is None:
        try:
            new = prepare()
        except OSError as e:
            raise NetnsError(f"creating a network namespace: {(e.strerror or str(e)).lower()}") \
                from e
    try:
        state = NetworkState("created", f"/proc/{os.getpid()}/fd/{new}")
        try:
            done = _setup(spec, plugins, state.path or "", skip)
            if result is not None:
                done.insert(0, result)
            state.results = [r for r in done if not callable(r)]
            state.pending = [r for r in done if callable(r)]
        finally:
            netns_ffi.setns(new, netns_ffi.CLONE_NEWNET)
    finally:
        os.close(new)
    state.path = None       # the fd path is gone; the namespace is /proc/<pid>/ns/net
    return state


def _adopt(spec: Any, plugins: Any) -> tuple[str, int, Any] | None:
    """A namespace a plugin wired ahead for this sandbox (quark_network_adopt, in a
    template's run): (plugin, fd, its result), or None."""
    if plugins is None:
        return None
    try:
        return plugins.network_adopt(spec, spec.id)     # type: ignore[no-any-return]
    except Exception as e:
        plugins.network_teardown(spec, None, spec.id)   # a half-done claim
        raise NetnsError(f"network setup: {e}") from e


def _setup(spec: Any, plugins: Any, path: str, skip: str | None = None) -> list[dict[str, Any]]:
    if plugins is None:
        return []
    try:
        results: list[Any] = plugins.network_setup(spec, path, spec.id, skip)
    except Exception as e:
        plugins.network_teardown(spec, path, spec.id)      # undo a half-done setup
        raise NetnsError(f"network setup: {e}") from e
    for r in results:
        if not callable(r):
            _log_result(r)
    return results


def _log_result(r: dict[str, Any]) -> None:
    ips = ", ".join(i.get("address", "?") for i in r.get("ips", []))
    log.info("network: %s", ips or r)
