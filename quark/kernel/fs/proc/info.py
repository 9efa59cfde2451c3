"""What procfs needs to know about a process; the kernel builds these snapshots
(``kernel.procs()``) under its lock, so procfs never touches task internals."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    sid: int
    comm: str
    state: str            # "R", "S", "D", "Z", "T", ...
    cmdline: bytes        # NUL-separated, NUL-terminated argv
    environ: bytes
    exe: str
    cwd: str
    root: str
    uid: int
    gid: int
    threads: int
    vm_size_kb: int
    vm_rss_kb: int
    fds: dict[int, str]   # fd -> link text: "/etc/passwd", "pipe:[123]", "/dev/null"
    start_time_ticks: int
    utime_ticks: int
    stime_ticks: int
