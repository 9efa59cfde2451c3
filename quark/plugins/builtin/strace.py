"""The ``--strace`` printer: one line per system call on stderr, like ``strace -f``.

Registered by the manager when ``quark --strace`` or ``[kernel] strace = true`` asks
for it; it implements only ``quark_syscall_exit`` (strace prints a call when it ends),
and ``quark_syscall_enter`` to read execve's arguments before the new image replaces
them. With it absent the kernel has no observer and pays nothing.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from quark.kernel import strace as decode
from quark.kernel.syscalls import table as systable
from quark.plugins.manager import hookimpl


class StracePlugin:
    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out
        self.table = systable.load()
        self.at_entry: dict[int, str] = {}      # tid -> arguments decoded at entry

    @hookimpl
    def quark_syscall_enter(self, task: Any, nr: int, args: Any) -> None:
        if nr in decode.DECODE_AT_ENTRY:
            self.at_entry[task.tid] = decode.format_args(task, nr, args.raw, 0, self.table)

    @hookimpl
    def quark_syscall_exit(self, task: Any, nr: int, args: Any, result: int) -> None:
        pre = self.at_entry.pop(task.tid, None) if nr in decode.DECODE_AT_ENTRY else None
        line = decode.format_call(task, nr, args.raw, result, self.table, pre)
        out = self.out or sys.stderr
        out.write(f"[pid {task.tid}] {line}\n")
        out.flush()

    @hookimpl
    def quark_plugin_status(self) -> str:
        return "printing system calls on stderr"
