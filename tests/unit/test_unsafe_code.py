"""STYLE.md: ctypes, cffi and ioctl live only in files named *_ffi.py."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UNSAFE = re.compile(r"^\s*(import ctypes|from ctypes|import cffi|from cffi)|fcntl\.ioctl", re.M)


def test_unsafe_code_has_an_address() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for base in (ROOT / "quark", ROOT / "plugins")
        for p in base.rglob("*.py")
        if not p.name.endswith("_ffi.py") and "build" not in p.parts
        and UNSAFE.search(p.read_text())
    ]
    assert not offenders, f"ctypes/cffi/ioctl outside *_ffi.py: {offenders}"
