"""Build the guest supervisor stub: GNU assembler source (`*.S`) to flat binaries.

Every `quark/core/guest/*.S` becomes a `*.bin` next to it: `as --64` then
`objcopy -O binary`. The package build (`setup.py`, a `build_py` step) does this for
installs; `ensure_built()` does it lazily for a source checkout where no `.bin` exists
yet. The stub is loaded at a guest address the core chooses, so the object must be
self-contained: no relocations left for a linker, and all code and data in one
section (in an unlinked object every section starts at 0, so `objcopy -O binary`
would overlay them). Both are checked here rather than discovered as a guest crash.

Only the standard library is used: `setup.py` loads this file by path, before any
dependency of the package exists.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

# tempfile (and the random it imports) and hashlib are imported where a build needs
# them: a run only reads the built stub, and every run (and the template its runs
# fork from) would otherwise carry ~0.2 MiB of modules it never calls. (shutil is
# not worth it: argparse imports it anyway.)

GUEST_DIR = Path(__file__).resolve().parent

# ELF64 constants (elf(5)).
_SHT_NOBITS = 8
_SHT_RELA = 4
_SHT_REL = 9
_SHF_ALLOC = 0x2


class GuestBuildError(Exception):
    """Assembling the guest stub failed; the message names the file and the cause."""


def _sections(obj: bytes) -> list[tuple[str, int, int, int]]:
    """(name, type, flags, size) of every section of a little-endian ELF64 object."""
    if obj[:4] != b"\x7fELF" or obj[4] != 2 or obj[5] != 1:
        raise GuestBuildError("assembler output is not a little-endian ELF64 object")
    # Elf64_Ehdr: e_shoff at 0x28, e_shentsize/e_shnum/e_shstrndx at 0x3a.
    (shoff,) = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    headers = []
    for i in range(shnum):
        # Elf64_Shdr: sh_name, sh_type (u32), sh_flags, sh_addr, sh_offset, sh_size (u64).
        name, typ, flags, _addr, offset, size = struct.unpack_from(
            "<IIQQQQ", obj, shoff + i * shentsize
        )
        headers.append((name, typ, flags, offset, size))
    strtab_off = headers[shstrndx][3]
    out = []
    for name, typ, flags, _offset, size in headers:
        end = obj.index(b"\0", strtab_off + name)
        out.append((obj[strtab_off + name : end].decode(), typ, flags, size))
    return out


def _check_object(src: Path, obj: bytes) -> None:
    """Reject objects whose flat binary would silently be wrong."""
    secs = _sections(obj)
    relocs = [n for n, t, _f, s in secs if t in (_SHT_REL, _SHT_RELA) and s]
    if relocs:
        raise GuestBuildError(
            f"{src.name}: unresolved relocations in {', '.join(relocs)}; "
            "reference local labels RIP-relatively (.globl symbols and absolute "
            "addresses of labels need a linker)"
        )
    loaded = [n for n, t, f, s in secs if f & _SHF_ALLOC and t != _SHT_NOBITS and s]
    if len(loaded) > 1:
        raise GuestBuildError(
            f"{src.name}: code and data in several sections ({', '.join(loaded)}); "
            "put everything in .text"
        )


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise GuestBuildError(f"'{name}' not found: install GNU binutils "
                              "(apt-get install binutils)")
    return path


def _run(argv: list[str], src: Path) -> None:
    proc = subprocess.run(argv, capture_output=True, text=True)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise GuestBuildError(f"{src.name}: {Path(argv[0]).name} failed:\n{detail}")


def assemble(src: Path, dst: Path) -> None:
    """Assemble `src` (GNU as syntax, x86-64) into the flat binary `dst`.

    `dst` is replaced atomically, so concurrent builders never expose a partial file.
    Raises GuestBuildError with the assembler's own diagnostics on failure.
    """
    import tempfile

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="quark-guest-") as tmp:
        obj = Path(tmp) / (src.stem + ".o")
        flat = Path(tmp) / (src.stem + ".bin")
        _run([_tool("as"), "--64", "-o", str(obj), str(src)], src)
        _check_object(src, obj.read_bytes())
        _run([_tool("objcopy"), "-O", "binary", str(obj), str(flat)], src)
        fd, tmp_dst = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
        os.close(fd)
        shutil.copyfile(flat, tmp_dst)
        os.chmod(tmp_dst, 0o644)
        os.replace(tmp_dst, dst)


# The vDSO is a real ELF shared object (glibc and musl parse it), linked at 0 with no
# dynamic relocations, its own soname and Linux's symbol versions.
VDSO_FLAGS = [
    "-shared", "-nostdlib", "-fPIC", "-O2", "-fno-stack-protector", "-mno-red-zone",
    "-Wall", "-Wl,-soname=linux-vdso.so.1", "-Wl,--hash-style=both", "-Wl,-Bsymbolic",
    "-Wl,-z,max-page-size=4096", "-Wl,-z,noseparate-code", "-Wl,-z,norelro",
    "-Wl,-z,noexecstack", "-Wl,--build-id=none",
]


def compile_vdso(src: Path, dst: Path) -> None:
    """Compile the vDSO C source `src` (with `<stem>.map`, its version script) to `dst`."""
    import tempfile

    src, dst = Path(src), Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    version_script = src.with_suffix(".map")
    layout = src.with_suffix(".lds")
    with tempfile.TemporaryDirectory(prefix="quark-guest-") as tmp:
        out = Path(tmp) / (src.stem + ".so")
        _run([_tool("gcc"), *VDSO_FLAGS, f"-Wl,--version-script={version_script}",
              f"-Wl,-T,{layout}", "-o", str(out), str(src)], src)
        data = out.read_bytes()
        if _sections_named(data, (_SHT_REL, _SHT_RELA)):
            raise GuestBuildError(f"{src.name}: the vDSO must not need relocations")
        fd, tmp_dst = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.")
        os.close(fd)
        shutil.copyfile(out, tmp_dst)
        os.chmod(tmp_dst, 0o644)
        os.replace(tmp_dst, dst)


def _sections_named(obj: bytes, types: tuple[int, ...]) -> list[str]:
    return [n for n, t, _f, s in _sections(obj) if t in types and s]


def sources(directory: Path = GUEST_DIR) -> list[Path]:
    """The stub sources, in a stable order."""
    return sorted(directory.glob("*.S"))


def c_sources(directory: Path = GUEST_DIR) -> list[Path]:
    """C sources of guest shared objects (the vDSO)."""
    return sorted(directory.glob("*.c"))


def _fresh(src: Path, dst: Path) -> bool:
    return dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime


def _cache_dir() -> Path:
    """A per-content directory under the user's cache, for read-only installs."""
    import hashlib

    digest = hashlib.sha256()
    for src in sources() + c_sources():
        digest.update(src.name.encode() + b"\0" + src.read_bytes())
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "quark" / "guest" / digest.hexdigest()[:16]


def _writable(directory: Path) -> bool:
    return os.access(directory, os.W_OK)


def ensure_built() -> Path:
    """The directory holding an up-to-date `<name>.bin` for every `<name>.S`.

    An install made by the package build already has them next to the sources, and
    this returns at once. In a source checkout the binaries are built there when it
    is writable, else in ~/.cache/quark/guest/<hash of the sources>/.
    """
    srcs = sources()
    csrcs = c_sources()
    if all(_fresh(s, s.with_suffix(".bin")) for s in srcs) and \
            all(_fresh(c, c.with_suffix(".so")) for c in csrcs):
        return GUEST_DIR
    if _writable(GUEST_DIR):
        out = GUEST_DIR
    else:
        out = _cache_dir()
    for src in srcs:
        dst = out / (src.stem + ".bin")
        if not _fresh(src, dst):
            assemble(src, dst)
    for src in csrcs:
        dst = out / (src.stem + ".so")
        if not _fresh(src, dst):
            if out != GUEST_DIR:
                for extra in (src, src.with_suffix(".map"), src.with_suffix(".lds")):
                    shutil.copyfile(extra, out / extra.name)
                src = out / src.name
            compile_vdso(src, dst)
    return out


def shared_object(name: str) -> bytes:
    """The bytes of the guest shared object `<name>.so` (the vDSO)."""
    path = ensure_built() / f"{name}.so"
    if not path.exists():
        raise GuestBuildError(f"no guest source {name}.c in {GUEST_DIR}")
    return path.read_bytes()


def binary(name: str) -> bytes:
    """The bytes of the stub `<name>.bin`, building it first if needed."""
    path = ensure_built() / f"{name}.bin"
    if not path.exists():
        raise GuestBuildError(f"no guest source {name}.S in {GUEST_DIR}")
    return path.read_bytes()


def build_all(directory: Path) -> list[Path]:
    """Assemble every `*.S` in `directory` next to itself (used by the package build)."""
    built = []
    for src in sources(directory):
        dst = src.with_suffix(".bin")
        assemble(src, dst)
        built.append(dst)
    for src in c_sources(directory):
        dst = src.with_suffix(".so")
        compile_vdso(src, dst)
        built.append(dst)
    return built
