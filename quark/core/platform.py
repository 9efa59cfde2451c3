"""Which kind of /dev/kvm this host has, and whether quark can run on it.

PVM (a paravirtual KVM backend for hosts without VT-x/AMD-V) keeps `syscall` at CPL 3,
which is what the gate of ``guest/supervisor_pvm.S`` is built for. On hardware
virtualization `syscall` enters CPL 0 at LSTAR, so the gate would have to be a normal
ring-0 entry (with SMEP a user LSTAR page faults): that stub variant is designed
(docs/platform.md) but not built, and quark says so instead of hanging.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PVM = "pvm"
HARDWARE = "hardware"
NONE = "none"


class PlatformError(Exception):
    """No usable /dev/kvm; the message says why."""


@dataclass(frozen=True)
class Platform:
    kind: str
    detail: str


def probe(kvm_path: str = "/dev/kvm", override: str = "auto") -> Platform:
    if not os.path.exists(kvm_path):
        return Platform(NONE, f"{kvm_path} does not exist")
    if not os.access(kvm_path, os.R_OK | os.W_OK):
        return Platform(NONE, f"{kvm_path} is not readable and writable by this user")
    if override in (PVM, HARDWARE):
        return Platform(override, "set by configuration")
    if os.path.isdir("/sys/module/kvm_pvm"):
        return Platform(PVM, "kvm_pvm module loaded")
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((ln for ln in f if ln.startswith("flags")), "")
    except OSError:
        flags = ""
    words = flags.split()
    if "vmx" in words or "svm" in words:
        return Platform(HARDWARE, "VT-x/AMD-V present")
    return Platform(PVM, "no VT-x/AMD-V flag: assuming a paravirtual backend")


def require_runnable(override: str = "auto") -> Platform:
    p = probe(override=override)
    if p.kind == NONE:
        raise PlatformError(f"no usable KVM: {p.detail}")
    if p.kind == HARDWARE:
        raise PlatformError(
            "this host has hardware virtualization (VT-x/AMD-V); quark's supervisor "
            "stub for it is not built yet (only the PVM variant is); see docs/platform.md")
    return p
