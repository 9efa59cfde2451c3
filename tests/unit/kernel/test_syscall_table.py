"""Invariants of the system call table (STYLE.md: the table is data, a test checks it)."""

from __future__ import annotations

import inspect

import pytest

from quark.kernel.syscalls import table as systable
from quark.tools import compat

pytestmark = pytest.mark.skipif(not compat.UNISTD.exists(),
                                reason=f"{compat.UNISTD} missing (apt-get install linux-libc-dev)")


def test_names_match_linux_numbers() -> None:
    linux = compat.linux_syscalls()
    wrong = {nr: (e.name, linux.get(nr)) for nr, e in systable.load().items()
             if linux.get(nr) != e.name}
    assert not wrong, f"table names differ from asm/unistd_64.h: {wrong}"


def test_handlers_are_coroutines_and_levels_valid() -> None:
    for nr, e in systable.load().items():
        assert e.level in (systable.SUPPORTED, systable.PARTIAL, systable.ERROR), nr
        if e.level == systable.ERROR:
            assert e.handler is None and e.errno > 0 and e.note, e
        else:
            assert inspect.iscoroutinefunction(e.handler), e
        if e.level == systable.PARTIAL:
            assert e.note, f"{e.name}: a partial entry must say what it lacks"


def test_compatibility_doc_is_current() -> None:
    assert compat.main(["--check"]) == 0, "run: python3 -m quark.tools.compat"
