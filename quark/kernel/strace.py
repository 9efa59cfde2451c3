"""A plain system call tracer: one line per call on stderr, like strace -f.

Arguments are shown raw (hex); decoding by type belongs to the plugin path of
issue 5. Enabled by ``[kernel] strace = true``.
"""

from __future__ import annotations

import errno as _errno
import sys
from typing import Any, Callable

from quark.kernel.syscalls import table as systable


def make_tracer(out: Any = None) -> Callable[[Any, int, list[int], int], None]:
    stream = out or sys.stderr
    tab = systable.load()

    def trace(t: Any, nr: int, raw: list[int], result: int) -> None:
        e = tab.get(nr)
        name = e.name if e else f"syscall_{nr}"
        args = ", ".join(hex(x) for x in raw[:3])
        if -4096 < result < 0:
            res = f"-1 {_errno.errorcode.get(-result, str(-result))}"
        else:
            res = hex(result) if result > 0xFFFF else str(result)
        stream.write(f"[{t.tid}] {name}({args}, ...) = {res}\n")

    return trace
