"""TSoR: the hook implementation that moves a sandbox's TCP streams onto RDMA verbs.

Quark Container's TSoR keeps the socket API in the guest and carries established TCP
streams between sandboxes as RDMA writes into per-connection ring buffers, with a
small control channel for connect/accept. This plugin is where that transport
attaches: at ``quark_network_setup`` it looks for RDMA devices (``/sys/class/
infiniband``) and for pyverbs (Debian's ``python3-pyverbs``, from rdma-core), and
opens a verbs context on the first device.

Without a device (this machine: no /sys/class/infiniband) it says so, once, in the
log and in ``quark plugins``, and steps aside: streams stay on the host TCP stack.
There is no fallback that pretends to be RDMA.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from quark.plugins import hookimpl

from . import __version__

log = logging.getLogger("quark.plugins.net_rdma")
SYSFS = "/sys/class/infiniband"


def devices() -> list[str]:
    try:
        return sorted(os.listdir(SYSFS))
    except OSError:
        return []


def pyverbs_status() -> str | None:
    """None if pyverbs imports, else why not."""
    try:
        import pyverbs.device  # noqa: F401
    except ImportError as e:
        return f"pyverbs missing ({e.name or e}; apt-get install python3-pyverbs)"
    return None


def status() -> tuple[bool, str]:
    devs = devices()
    if not devs:
        return False, f"no RDMA device ({SYSFS} is absent or empty): TCP stays on the host stack"
    missing = pyverbs_status()
    if missing:
        return False, f"RDMA devices {', '.join(devs)} but {missing}: TCP stays on the host stack"
    return True, f"RDMA devices: {', '.join(devs)} (pyverbs available)"


@hookimpl
def quark_network_setup(spec: Any, netns_path: str, sandbox_id: str) -> dict[str, Any] | None:
    ok, text = status()
    if not ok:
        log.info("net_rdma: %s", text)
        return None
    import pyverbs.device as d
    # Opening the context proves the device is usable; the stream transport (QP per
    # connection, RDMA-write rings) is not implemented yet, so nothing is redirected.
    with d.Context(name=devices()[0]) as ctx:
        attr = ctx.query_device()
    log.info("net_rdma: %s usable (fw %s); TSoR transport not implemented: TCP stays "
             "on the host stack", devices()[0], attr.fw_ver)
    return None


@hookimpl
def quark_plugin_status() -> str:
    return f"v{__version__}: " + status()[1]
