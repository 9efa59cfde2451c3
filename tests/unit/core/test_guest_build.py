"""The guest stub build: `as --64` + `objcopy -O binary`, checked, shipped."""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

import pytest

from quark.core.guest import build

pytestmark = pytest.mark.skipif(shutil.which("as") is None or shutil.which("objcopy") is None,
                                reason="GNU binutils (as, objcopy) not installed")

# The bytes selftest.S assembles to (its comments list them instruction by instruction).
SELFTEST = bytes.fromhex("b82a000000" "488d3502000000" "f4" "c3") + b"quark"


def test_assemble_selftest(tmp_path: Path) -> None:
    out = tmp_path / "selftest.bin"
    build.assemble(build.GUEST_DIR / "selftest.S", out)
    assert out.read_bytes() == SELFTEST


def test_ensure_built_provides_every_source() -> None:
    out = build.ensure_built()
    for src in build.sources():
        assert (out / (src.stem + ".bin")).stat().st_size > 0
    assert build.binary("selftest") == SELFTEST


def test_ensure_built_read_only_package_uses_cache(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(build.GUEST_DIR / "selftest.S", pkg)
    monkeypatch.setattr(build, "GUEST_DIR", pkg)
    monkeypatch.setattr(build, "sources", lambda directory=pkg: sorted(pkg.glob("*.S")))
    monkeypatch.setattr(build, "_writable", lambda directory: False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    out = build.ensure_built()
    assert out.is_relative_to(tmp_path / "cache" / "quark" / "guest")
    assert (out / "selftest.bin").read_bytes() == SELFTEST
    assert not (pkg / "selftest.bin").exists()


def test_syntax_error_is_reported(tmp_path: Path) -> None:
    src = tmp_path / "bad.S"
    src.write_text("        movq %rax\n")
    with pytest.raises(build.GuestBuildError, match=r"(?s)bad.S: as failed:\n.*Error"):
        build.assemble(src, tmp_path / "bad.bin")
    assert not (tmp_path / "bad.bin").exists()


def test_relocations_are_rejected(tmp_path: Path) -> None:
    src = tmp_path / "reloc.S"
    src.write_text("        .text\n        movabs $target, %rax\n        .data\ntarget: .quad 0\n")
    with pytest.raises(build.GuestBuildError, match="unresolved relocations"):
        build.assemble(src, tmp_path / "reloc.bin")


def test_several_sections_are_rejected(tmp_path: Path) -> None:
    src = tmp_path / "two.S"
    src.write_text("        .text\n        ret\n        .data\n        .byte 1\n")
    with pytest.raises(build.GuestBuildError, match=r"several sections \(.text, .data\)"):
        build.assemble(src, tmp_path / "two.bin")


def test_installed_distribution_ships_the_binaries() -> None:
    """After `pip install .`, the installed package holds a .bin beside each .S."""
    try:
        dist = importlib.metadata.distribution("quark-runtime")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("quark-runtime is not installed (scripts/setup-debian.sh installs it)")
    guest = Path(str(dist.locate_file("quark/core/guest")))
    if not (guest / "build.py").exists() or guest.resolve() == build.GUEST_DIR:
        pytest.skip(f"quark-runtime is not installed from a wheel ({guest})")
    sources = sorted(guest.glob("*.S"))
    assert sources, f"no guest sources in {guest}"
    for src in sources:
        assert src.with_suffix(".bin").stat().st_size > 0, f"{src.stem}.bin not installed"
