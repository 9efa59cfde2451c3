"""Guest tests: print how many programs behaved identically natively and under quark."""

from __future__ import annotations

import pytest


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    counts: dict[str, dict[str, int]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for rep in terminalreporter.stats.get(outcome, []):
            nodeid = getattr(rep, "nodeid", "")
            if "tests/guest/" not in nodeid or getattr(rep, "when", "call") not in ("call", "setup"):
                continue
            if outcome == "passed" and rep.when != "call":
                continue
            group = nodeid.split("::")[-1].split("[")[0]
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
