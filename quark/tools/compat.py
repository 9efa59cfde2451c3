"""Generate docs/compatibility.md from the system call table.

The x86-64 syscall names come from the kernel headers (linux-libc-dev's
asm/unistd_64.h), so calls quark does not know appear too, as ENOSYS.
Run: ``python3 -m quark.tools.compat [--check] [OUTPUT]``.
"""

from __future__ import annotations

import argparse
import errno
import re
import sys
from pathlib import Path

UNISTD = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "docs" / "compatibility.md"


def linux_syscalls(header: Path = UNISTD) -> dict[int, str]:
    names: dict[int, str] = {}
    for m in re.finditer(r"#define __NR_(\w+)\s+(\d+)", header.read_text()):
        names[int(m.group(2))] = m.group(1)
    return names


def render(names: dict[int, str]) -> str:
    from quark.kernel.syscalls import table as systable
    tab = systable.load()
    rows = []
    counts = {"supported": 0, "partial": 0, "error": 0, "ENOSYS": 0}
    for nr in sorted(set(names) | set(tab)):
        e = tab.get(nr)
        name = e.name if e else names.get(nr, f"#{nr}")
        if e is None:
            level, note = "ENOSYS", "not implemented"
        elif e.level == systable.ERROR:
            level = "error"
            note = f"always {errno.errorcode.get(e.errno, e.errno)}: {e.note}"
        else:
            level, note = e.level, e.note
        counts[level] += 1
        rows.append(f"| {nr} | `{name}` | {level} | {note.replace('|', '/')} |")
    handled = counts["supported"] + counts["partial"]
    head = [
        "# Linux system call compatibility (x86-64)",
        "",
        "Generated from `quark/kernel/syscalls/table.py` by `python3 -m quark.tools.compat`;",
        "a test checks it is current. *supported*: the call behaves as on Linux;",
        "*partial*: it works with the limits noted; *error*: it always fails with the",
        "errno given (as Linux would for a process without that privilege);",
        "*ENOSYS*: unknown to quark (logged once per sandbox, never a crash).",
        "",
        f"- real handlers: **{handled}** ({counts['supported']} supported, "
        f"{counts['partial']} partial)",
        f"- fixed errors: **{counts['error']}**",
        f"- ENOSYS: **{counts['ENOSYS']}** of {len(set(names) | set(tab))} numbers",
        "",
        "| nr | call | level | notes |",
        "|---:|---|---|---|",
    ]
    return "\n".join(head + rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("output", nargs="?", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--check", action="store_true", help="fail if OUTPUT is not current")
    ns = ap.parse_args(argv)
    text = render(linux_syscalls())
    if ns.check:
        if not ns.output.exists() or ns.output.read_text() != text:
            print(f"{ns.output} is out of date: run python3 -m quark.tools.compat",
                  file=sys.stderr)
            return 1
        return 0
    ns.output.write_text(text)
    print(f"wrote {ns.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
