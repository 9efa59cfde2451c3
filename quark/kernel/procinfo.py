"""Snapshots of the thread groups for /proc (built under the kernel lock)."""

from __future__ import annotations

from typing import Any

CLK_TCK = 100


def _fd_text(f: Any) -> str:
    return str(getattr(f, "path", "") or "anon_inode:[unknown]")


def proc_infos(k: Any) -> list[Any]:
    out = []
    for tg in sorted(k.groups.values(), key=lambda g: g.pid):
        info = _info(k, tg)
        if info is not None:
            out.append(info)
    return out


def proc_info(k: Any, pid: int) -> Any | None:
    """The snapshot of one thread group (a lookup of /proc/PID/...), or None."""
    tg = k.groups.get(pid)
    return _info(k, tg) if tg is not None else None


def proc_owner(k: Any, pid: int) -> tuple[int, int] | None:
    """(uid, gid) of /proc/PID, or None where there is no such process: all a
    lookup of the directory needs."""
    tg = k.groups.get(pid)
    if tg is None:
        return None
    lead = tg.leader
    if lead is None:
        return (0, 0) if tg.zombie else None
    creds = None if tg.zombie else lead.creds
    return (creds.uid, creds.gid) if creds else (0, 0)


def _info(k: Any, tg: Any) -> Any | None:
    from quark.kernel.fs.proc.info import ProcInfo
    lead = tg.leader
    if lead is None and not tg.zombie:
        return None
    if tg.zombie or lead is None:
        state, mm, fds, fs, creds = "Z", None, None, None, None
    else:
        state = "T" if tg.stopped else ("R" if lead.vcpu is not None else "S")
        mm, fds, fs, creds = lead.mm, lead.fds, lead.fs, lead.creds
    return ProcInfo(
        pid=tg.pid,
        ppid=tg.ppid,
        pgid=tg.pgid,
        sid=tg.sid,
        comm=tg.comm,
        state=state,
        cmdline=tg.cmdline if mm is not None else b"",
        environ=tg.environ if mm is not None else b"",
        exe=tg.exe,
        cwd=fs.cwd_path() if fs is not None else "/",
        root="/",
        uid=creds.uid if creds else 0,
        gid=creds.gid if creds else 0,
        threads=len(tg.threads),
        vm_size_kb=mm.size_bytes() // 1024 if mm else 0,
        vm_rss_kb=mm.rss_pages() * 4 if mm else 0,
        fds={fd: _fd_text(f) for fd, f in fds} if fds is not None else {},
        start_time_ticks=int((tg.start_time - k.boot_monotonic) * CLK_TCK),
        utime_ticks=int(tg.utime * CLK_TCK),
        stime_ticks=int(tg.stime * CLK_TCK),
    )
