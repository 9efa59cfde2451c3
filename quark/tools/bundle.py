"""Build small OCI bundles from the host: Debian's static busybox plus, optionally,
other static binaries. Used by the README demo, the tests and bench/.

The rootfs gets /bin/busybox with one symlink per applet (`busybox --list`), minimal
/etc files, and the usual empty mount points; config.json is `runc spec`'s, with
`terminal: false` (so it runs under any runtime without a tty) and a writable root.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..oci.defaults import default_spec

BUSYBOX_CANDIDATES = (Path("/bin/busybox"), Path("/usr/bin/busybox"))

ETC_FILES = {
    "passwd": "root:x:0:0:root:/root:/bin/sh\n"
              "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    "group": "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n",
    "hostname": "quark\n",
}
# Directory, mode. /proc /dev /sys are mount points of the default config.json.
DIRS = (("bin", 0o755), ("etc", 0o755), ("tmp", 0o1777), ("proc", 0o555), ("dev", 0o755),
        ("sys", 0o555), ("root", 0o700))


class BundleError(Exception):
    """The bundle cannot be built (one line naming the problem)."""


def is_static_elf(path: Path) -> bool:
    """True if `path` is an ELF64 executable with no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        ehdr = f.read(64)
        if len(ehdr) < 64 or ehdr[:4] != b"\x7fELF" or ehdr[4] != 2:
            return False
        # Elf64_Ehdr: e_phoff at 0x20, e_phentsize and e_phnum at 0x36.
        (phoff,) = struct.unpack_from("<Q", ehdr, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", ehdr, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    pt_interp = 3
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != pt_interp
               for i in range(phnum))


def find_busybox() -> Path:
    """The host's static busybox (Debian package busybox-static)."""
    for path in BUSYBOX_CANDIDATES:
        if path.is_file() and os.access(path, os.X_OK):
            if not is_static_elf(path):
                raise BundleError(f"{path} is dynamically linked: "
                                  "install busybox-static (apt-get install busybox-static)")
            return path
    raise BundleError("no busybox found: install busybox-static (apt-get install busybox-static)")


def _applets(busybox: Path) -> list[str]:
    out = subprocess.run([str(busybox), "--list"], capture_output=True, text=True, check=True)
    return [a for a in out.stdout.split() if a and "/" not in a and a != "busybox"]


def make_rootfs(rootfs: Path, *, extra_binaries: Iterable[Path] = ()) -> None:
    """Fill the empty (or missing) directory `rootfs` with busybox and the basics."""
    for name, mode in DIRS:
        d = rootfs / name
        d.mkdir(parents=True, exist_ok=True)
        d.chmod(mode)
    busybox = find_busybox()
    shutil.copy2(busybox, rootfs / "bin" / "busybox")
    for applet in _applets(busybox):
        link = rootfs / "bin" / applet
        if not link.exists():
            link.symlink_to("busybox")
    for name, text in ETC_FILES.items():
        (rootfs / "etc" / name).write_text(text)
    for binary in extra_binaries:
        binary = Path(binary)
        if not binary.is_file():
            raise BundleError(f"{binary} does not exist")
        if not is_static_elf(binary):
            raise BundleError(f"{binary} is not a static ELF executable (build with -static)")
        shutil.copy2(binary, rootfs / "bin" / binary.name)


def bundle_config(args: list[str], **process: Any) -> dict[str, Any]:
    """`runc spec`'s config.json with these args, no terminal, a writable root, and
    the given process fields (e.g. env=[...], cwd="/tmp") replaced."""
    config = default_spec(args, terminal=False)
    config["root"]["readonly"] = False
    config["process"].update(process)
    return config


def make_busybox_bundle(bundle: Path, args: list[str] | None = None, *,
                        extra_binaries: Iterable[Path] = (), **process: Any) -> Path:
    """Create the bundle directory `bundle` (absent or empty) and return it.

    :param args: process.args of config.json (default: `sh`).
    :param extra_binaries: static executables copied into /bin.
    :param process: other process fields of config.json to set.
    """
    bundle = Path(os.path.abspath(bundle))
    if bundle.exists() and (not bundle.is_dir() or any(bundle.iterdir())):
        raise BundleError(f"{bundle} exists and is not an empty directory")
    bundle.mkdir(parents=True, exist_ok=True)
    make_rootfs(bundle / "rootfs", extra_binaries=extra_binaries)
    config = bundle_config(list(args or ["sh"]), **process)
    (bundle / "config.json").write_text(json.dumps(config, indent="\t") + "\n")
    return bundle
