"""The text of procfs files, formatted as Linux 6.x formats them (fs/proc/array.c,
fs/proc/base.c): procps and busybox parse these field by field."""

from __future__ import annotations

import os
import time
from typing import Any

from quark.kernel.fs.proc.info import ProcInfo

CLK_TCK = 100
_STATES = {"R": "R (running)", "S": "S (sleeping)", "D": "D (disk sleep)",
           "T": "T (stopped)", "t": "t (tracing stop)", "Z": "Z (zombie)",
           "X": "X (dead)", "I": "I (idle)"}
CAP_FULL = 0x1FFFFFFFFFF  # CAP_LAST_CAP = 40
FILESYSTEMS = ("sysfs", "tmpfs", "bdev", "proc", "cgroup", "cgroup2", "devtmpfs",
               "devpts", "mqueue", "pipefs", "sockfs")


def release(k: Any) -> str:
    r = getattr(k, "osrelease", None)
    if r:
        return str(r)
    try:
        from quark.kernel.syscalls.sys_misc import UTS_RELEASE
        return str(UTS_RELEASE)
    except ImportError:
        return "6.1.0-quark"


def pid_stat(p: ProcInfo, vm_rss_pages: int | None = None) -> str:
    """/proc/<pid>/stat: 52 fields; comm in parentheses, unescaped, as Linux does."""
    rss = p.vm_rss_kb // 4 if vm_rss_pages is None else vm_rss_pages
    fields = [
        p.pid, f"({p.comm})", p.state, p.ppid, p.pgid, p.sid,
        0, -1, 4194304,                # tty_nr, tpgid, flags
        0, 0, 0, 0,                    # minflt cminflt majflt cmajflt
        p.utime_ticks, p.stime_ticks, 0, 0,
        20, 0, p.threads, 0,           # priority nice num_threads itrealvalue
        p.start_time_ticks, p.vm_size_kb * 1024, rss, 18446744073709551615,
        0, 0, 0, 0, 0,                 # startcode endcode startstack kstkesp kstkeip
        0, 0, 0, 0, 0,                 # signal blocked sigignore sigcatch wchan
        0, 0, 17, 0, 0, 0,             # nswap cnswap exit_signal processor rt_prio policy
        0, 0, 0,                       # delayacct_blkio guest_time cguest_time
        0, 0, 0, 0, 0, 0, 0,           # start_data end_data start_brk arg/env bounds
        0,                             # exit_code
    ]
    return " ".join(str(f) for f in fields) + "\n"


def pid_status(p: ProcInfo) -> str:
    caps = CAP_FULL if p.uid == 0 else 0
    ncpu = os.cpu_count() or 1
    lines = [
        f"Name:\t{p.comm}",
        "Umask:\t0022",
        f"State:\t{_STATES.get(p.state, p.state)}",
        f"Tgid:\t{p.pid}", "Ngid:\t0", f"Pid:\t{p.pid}", f"PPid:\t{p.ppid}",
        "TracerPid:\t0",
        f"Uid:\t{p.uid}\t{p.uid}\t{p.uid}\t{p.uid}",
        f"Gid:\t{p.gid}\t{p.gid}\t{p.gid}\t{p.gid}",
        f"FDSize:\t{max(64, 1 << (max(p.fds, default=0)).bit_length())}",
        "Groups:\t ",
        f"NStgid:\t{p.pid}", f"NSpid:\t{p.pid}", f"NSpgid:\t{p.pgid}", f"NSsid:\t{p.sid}",
        "Kthread:\t0",
    ]
    if p.state != "Z":
        rss = p.vm_rss_kb
        lines += [
            f"VmPeak:\t{p.vm_size_kb:8d} kB", f"VmSize:\t{p.vm_size_kb:8d} kB",
            f"VmLck:\t{0:8d} kB", f"VmPin:\t{0:8d} kB",
            f"VmHWM:\t{rss:8d} kB", f"VmRSS:\t{rss:8d} kB",
            f"RssAnon:\t{rss:8d} kB", f"RssFile:\t{0:8d} kB", f"RssShmem:\t{0:8d} kB",
            f"VmData:\t{0:8d} kB", f"VmStk:\t{132:8d} kB", f"VmExe:\t{0:8d} kB",
            f"VmLib:\t{0:8d} kB", f"VmPTE:\t{0:8d} kB", f"VmSwap:\t{0:8d} kB",
            "HugetlbPages:\t       0 kB", "CoreDumping:\t0", "THP_enabled:\t1",
            "untag_mask:\t0xffffffffffffffff",
        ]
    lines += [
        f"Threads:\t{p.threads}",
        "SigQ:\t0/63432",
        "SigPnd:\t0000000000000000", "ShdPnd:\t0000000000000000",
        "SigBlk:\t0000000000000000", "SigIgn:\t0000000000000000",
        "SigCgt:\t0000000000000000",
        "CapInh:\t0000000000000000", f"CapPrm:\t{caps:016x}", f"CapEff:\t{caps:016x}",
        f"CapBnd:\t{CAP_FULL:016x}", "CapAmb:\t0000000000000000",
        "NoNewPrivs:\t0", "Seccomp:\t0", "Seccomp_filters:\t0",
        "Speculation_Store_Bypass:\tthread vulnerable",
        "SpeculationIndirectBranch:\tconditional enabled",
        f"Cpus_allowed:\t{(1 << ncpu) - 1:x}",
        f"Cpus_allowed_list:\t{'0' if ncpu == 1 else f'0-{ncpu - 1}'}",
        "Mems_allowed:\t00000001", "Mems_allowed_list:\t0",
        "voluntary_ctxt_switches:\t0", "nonvoluntary_ctxt_switches:\t0",
    ]
    return "\n".join(lines) + "\n"


def pid_statm(p: ProcInfo) -> str:
    return f"{p.vm_size_kb // 4} {p.vm_rss_kb // 4} 0 0 0 {p.vm_rss_kb // 4} 0\n"


def mounts(vfs: Any) -> str:
    out = []
    for m in vfs.mounts():
        src = m.source if m.fs.name not in ("hostfs",) else "rootfs" if m.path == "/" else m.source
        fstype = "overlay" if m.fs.name == "hostfs" and m.path == "/" else \
            "bind" if m.fs.name == "hostfs" else m.fs.name
        if fstype == "bind":
            fstype = "ext4"  # what a bind mount shows: its source's type (unknown here)
        out.append(f"{_esc(src)} {_esc(m.path)} {fstype} {m.options_text()} 0 0\n")
    return "".join(out)


def mountinfo(vfs: Any) -> str:
    out = []
    for m in vfs.mounts():
        parent = m.parent.id if m.parent is not None else m.id
        fstype = m.fs.name if m.fs.name != "hostfs" else "overlay"
        mopts = m.options_text().split(",")
        out.append(f"{m.id} {parent} {m.fs.dev[0]}:{m.fs.dev[1]} / {_esc(m.path)} "
                   f"{','.join(mopts[:1] + [o for o in mopts[1:] if '=' not in o])} "
                   f"- {fstype} {_esc(m.source)} {mopts[0]}\n")
    return "".join(out)


def _esc(s: str) -> str:
    return s.replace("\\", "\\134").replace(" ", "\\040").replace("\t", "\\011") \
        .replace("\n", "\\012")


def filesystems() -> str:
    return "".join(f"nodev\t{n}\n" for n in FILESYSTEMS)


def uptime(k: Any) -> str:
    up = max(0.0, time.time() - float(getattr(k, "boot_time", time.time())))
    ncpu = os.cpu_count() or 1
    return f"{up:.2f} {up * ncpu * 0.99:.2f}\n"


def loadavg(procs: list[ProcInfo]) -> str:
    running = sum(1 for p in procs if p.state == "R")
    last = max((p.pid for p in procs), default=1)
    return f"0.00 0.00 0.00 {max(running, 1)}/{len(procs)} {last}\n"


def stat(k: Any, procs: list[ProcInfo]) -> str:
    ncpu = os.cpu_count() or 1
    user = sum(p.utime_ticks for p in procs)
    system = sum(p.stime_ticks for p in procs)
    up = max(0.0, time.time() - float(getattr(k, "boot_time", time.time())))
    idle = max(0, int(up * CLK_TCK) * ncpu - user - system)
    lines = [f"cpu  {user} 0 {system} {idle} 0 0 0 0 0 0"]
    for i in range(ncpu):
        lines.append(f"cpu{i} {user // ncpu} 0 {system // ncpu} {idle // ncpu} 0 0 0 0 0 0")
    lines += ["intr 0", "ctxt 0", f"btime {int(getattr(k, 'boot_time', time.time()))}",
              f"processes {max((p.pid for p in procs), default=1)}",
              f"procs_running {max(1, sum(1 for p in procs if p.state == 'R'))}",
              "procs_blocked 0", "softirq 0 0 0 0 0 0 0 0 0 0 0"]
    return "\n".join(lines) + "\n"


def version(k: Any) -> str:
    return (f"Linux version {release(k)} (quark@quark) (gcc (GCC) 12.2.0, GNU ld 2.40) "
            "#1 SMP PREEMPT_DYNAMIC\n")


def host_file(path: str, fallback: str = "") -> str:
    """Host /proc text the container may see (cpuinfo, meminfo)."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return fallback


def locks(k: Any) -> str:
    """/proc/locks: every granted advisory lock (vfs/locks.py)."""
    table = getattr(k, "locks", None)
    return table.proc_text() if table is not None else ""
