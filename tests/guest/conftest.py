"""Guest tests: print how many programs behaved identically natively and under quark
(and, for the modules in PER_CASE, each case's outcome)."""

from __future__ import annotations

import pytest

from tests.guest.harness import can_chroot

# Modules whose every case is listed in the summary (issue acceptance checks).
PER_CASE = ("tests/guest/test_debian.py",)


@pytest.fixture
def need_chroot() -> None:
    """Skips a test that needs the native reference run (chroot as root) where it is
    impossible; a module asks with ``pytest.mark.usefixtures("need_chroot")``."""
    reason = can_chroot()
    if reason:
        pytest.skip(f"native reference runs impossible: {reason}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts: dict[str, dict[str, int]] = {}
    cases: dict[str, str] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(rep, "nodeid", "")
            if "tests/guest/" not in nodeid or getattr(rep, "when", "call") not in ("call", "setup"):
                continue
            if outcome == "passed" and rep.when != "call":
                continue
            group = nodeid.split("::")[-1].split("[")[0]
            if nodeid.split("::")[0] in PER_CASE:
                cases[nodeid.split("::", 1)[1]] = outcome
            counts.setdefault(group, {}).setdefault(outcome, 0)
            counts[group][outcome] += 1
    if not counts:
        return
    terminalreporter.section("guest programs: native vs quark")
    for group in sorted(counts):
        c = counts[group]
        total = sum(c.values())
        detail = ", ".join(f"{c[k]} {k}" for k in ("failed", "error", "skipped") if c.get(k))
        terminalreporter.write_line(f"{group}: {c.get('passed', 0)}/{total} passed"
                                    + (f" ({detail})" if detail else ""))
    for case, outcome in sorted(cases.items()):
        terminalreporter.write_line(f"  {outcome.upper():7} {case}")
