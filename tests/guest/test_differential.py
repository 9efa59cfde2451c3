"""Guest behaviour, differentially: each static C program in progs/ runs natively (in a
chroot of the same rootfs, the host kernel answering) and under quark (`quark do`), and
both runs must print the same stdout and end with the same exit code.

`test_native_reference` runs only the native side and checks key lines: it proves the
programs and their expectations are right on this machine, independent of quark.
`test_differential` is the real test. See harness.py for the rootfs contents.
"""

from __future__ import annotations

import difflib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from quark.tools.bundle import make_rootfs
from tests.guest.harness import (
    HELLO,
    PROGS,
    ROOTFS_SHADOW,
    Result,
    env_args,
    fresh_copy,
    populate,
    run_native,
)

pytestmark = pytest.mark.usefixtures("need_chroot")  # every test runs natively too
CFLAGS = ("-Wall", "-I", str(PROGS))
MARKER_TEXT = "HOST-SECRET-" + secrets.token_hex(8)


@dataclass(frozen=True)
class Case:
    """One run of one program: /bin/<prog> ARGS, the exit code a shell would see, and
    lines stdout must contain (checked natively; under quark, stdout must equal native)."""

    prog: str
    args: tuple[str, ...] = ()
    code: int = 0
    must: tuple[str, ...] = ()
    name: str = ""

    @property
    def id(self) -> str:
        return self.name or self.prog


CASES = [
    Case("hello", ("a b", "c"), must=("hello, world", "argc=3", "argv[1]=a b", "argv[2]=c")),
    Case("exitcode", code=3, must=("buffered line 1", "buffered line 2")),
    Case("exitcode", ("0",), name="exitcode-0", must=("buffered line 2",)),
    Case("exitcode", ("255",), code=255, name="exitcode-255"),
    Case("segv", code=139, must=("before the fault",)),
    Case("fileio", must=(f"read 22: {HELLO.strip()}", "renameat2: ok",
                         "RENAME_NOREPLACE onto existing: EEXIST", "rmdir: ok",
                         "dup3 same fd = -1 EINVAL", "readlinkat link: hello.txt")),
    Case("writebehind", must=("after 16 blocks: fstat 65536, position 65536",
                              "pread block 3: 3", "another fd reads block 19: 19",
                              "stat by path: 94208", "after the /dev/zero loop: fstat 503808",
                              "mmap sees the last block: 41", "child saw 126 blocks",
                              "after truncate: fstat 5000, position 545068",
                              "unlinked file still written: fstat 569644",
                              "O_SYNC: fstat 12288", "done")),
    Case("gatecalls", must=("read zero 4096 = 4096 , again 4096, registers and flags kept: 1",
                            "read zero across a hole = 2048 , again 2048, registers and "
                            "flags kept: 1",
                            "read zero into a read-only page = -1 EFAULT, again -1, "
                            "registers and flags kept: 1",
                            "write null from NULL = 16 , again 16, registers and flags kept: 1",
                            "read with DF set = 32, zeroed 1, byte 32 0x55",
                            "after dup2 read 5: hello", "read after close = -1 EBADF",
                            "reads under signals: many, bad 0, handler ran 1",
                            "after 101 writes: size 101000, another fd reads byte 100500: w",
                            "ring write across a hole = 2048",
                            "after fork: child status 0, size 1251524",
                            "after the ring was taken away: size 1476804", "done")),
    Case("mapcache", must=("child's private store: exit 0",
                           "new mapping after a rewrite: byte 8192 = 0x55, "
                           "sum 15275261635329263616",
                           "after truncate and regrow: byte 8192 = 0, "
                           "sum 1690497767673100288",
                           "done")),
    Case("memory", must=("touch unmapped: killed by SEGV (shell: 139)",
                         "write RO page: killed by SEGV (shell: 139)",
                         "private write: map X12, file 012", "brk grows: 1",
                         "fork is copy-on-write: child saw 2, parent still 1")),
    Case("identity", must=("getpid > 0: 1",
                           "sysname=Linux machine=x86_64 release starts with a digit: 1",
                           "set_tid_address == tid: 1", "two draws differ: 1",
                           "fs base == %fs:0 self pointer: 1", "soft now 100")),
    Case("timeprog", must=("slept >= 50ms: 1, < 2s: 1", "1000 monotonic reads never go back: 1",
                           "nanosleep nsec=1e9 = -1 EINVAL")),
    Case("procs", must=("child 1: exited 3", "child 4: killed by KILL (shell: 137)",
                        "child 5: killed by TERM (shell: 143)", "exec child: exited 17",
                        "exec-child: QUARK_TEST=yes PATH=unset", "execve missing: ENOENT",
                        "wait with no children = -1 ECHILD")),
    Case("pipes", must=("child read 307200 bytes, sum 1644788468, last read 0",
                        "consumer: 100 lines, 19 with a 7",
                        "nonblocking read of an empty pipe = -1 EAGAIN")),
    Case("signals", must=("handler ran: 1, si_signo 10, si_code SI_TKILL, on the main stack: 1",
                          "while blocked: hits 0, pending 1", "after unblock: hits 1",
                          "SA_ONSTACK handler on the alternate stack: 1",
                          "SIGCHLD: si_code CLD_EXITED, si_status 5",
                          "write to a closed pipe: killed by PIPE (shell: 141)",
                          "with SIGPIPE ignored = -1 EPIPE")),
    Case("sigrestart", must=("SA_RESTART: read returned 4 (data), handler ran 1",
                             "no SA_RESTART: read returned -1 (EINTR), handler ran 1")),
    Case("faults", must=("NULL write: killed by SEGV (shell: 139)",
                         "ud2: killed by ILL (shell: 132)", "1/0: killed by FPE (shell: 136)",
                         "int3: killed by TRAP (shell: 133)",
                         "NULL write caught: SEGV SEGV_MAPERR si_addr=0",
                         "still alive after catching every fault")),
    Case("badptr", must=("write(1, 1, 10) = -1 EFAULT", "open((char *)1) = -1 EFAULT",
                         "read into unmapped = -1 EFAULT",
                         "write to a file across the end of a mapping = 5",
                         "write to a pipe across the end of a mapping = -1 EFAULT",
                         "write(/dev/null, unmapped, 10) = 10",
                         "pwrite(/dev/null, NULL, 10) = 10",
                         "writev to a file, bad second iovec = 2", "survived")),
    Case("nosys", must=("syscall(500) = -1 ENOSYS", "syscall(-1) = -1 ENOSYS",
                        "getpid still works: 1")),
    Case("shm", must=("anon shared page 0 = 42, page 1 = 7, private = 1",
                      "second child sees: exited 5", "sem child: exited 3",
                      "parent sees: \"from the child, page 1\"",
                      "pread after munmap: \"before munmap, no msync\"",
                      "parent sees \"memfd child\"")),
    Case("remap", must=("grow in place: ok, same address: 1, data kept: 1",
                        "grow with MAYMOVE: moved 1, data kept 1",
                        "DONTUNMAP: ok, data moved 1, old range zero 1",
                        "shared after the child's mremap: 77",
                        "unmapped old address: EFAULT")),
    Case("escape", must=("../../../../etc/shadow from /: read \""
                         + ROOTFS_SHADOW.strip() + "\"",
                         "symlink -> /etc/hostname: read \"quark\"",
                         "host path of the marker: ENOENT", "after 50 x chdir(..): /")),
    Case("fifo", must=("O_RDONLY open waited for the writer: 1",
                       "O_WRONLY open waited for the reader: 1",
                       "read after the writer left (EOF) = 0", "revents 0",
                       "O_WRONLY|O_NONBLOCK without a reader = -1 ENXIO",
                       "read: onetwo", "data left by closed openers = -1 EAGAIN",
                       "O_RDONLY open, signal without SA_RESTART = -1 EINTR",
                       "O_WRONLY open, signal without SA_RESTART = -1 EINTR",
                       "O_RDONLY open, signal with SA_RESTART: ok, handler ran 1")),
    Case("robust", must=("lock after the owner exited: EOWNERDEAD", "consistent: OK",
                         "lock again: OK", "waiter woken by the owner's death: EOWNERDEAD",
                         "lock after unlock without consistent: ENOTRECOVERABLE",
                         "held, held+waiters, other owner, pending: words 0x40000000 "
                         "0xc0000000 0x7 0x40000000",
                         "circular list: words 0x40000000 0x40000000 0 0",
                         "garbage next pointer: words 0x40000000 0x1234 0 0", "survived")),
    Case("jobctl", must=("waitpid(-a1) again = -1 ECHILD", "waitpid(0) got b: 1",
                         "  group member 2: killed by USR1 (shell: 138)",
                         "  child: stopped by STOP", "reported once (WUNTRACED|WNOHANG) = 0",
                         "  child: continued (0xffff)",
                         "SIGTSTP stopped a child in an orphaned group: 0",
                         "SIGTSTP in a child's own group: stopped by TSTP",
                         "read while the writer is stopped = -1 EAGAIN",
                         "reader after SIGCONT and a byte: exited 7",
                         "nanosleep stopped and continued: exited 0",
                         "bytes left in the pipe while it is stopped: 1",
                         "two-thread process after SIGCONT: exited 5",
                         "group stopped: 2 of 2", "group continued: 2 of 2",
                         "orphaned stopped job: killed by HUP (shell: 129)",
                         "setpgid(-1, 0) = -1 EINVAL",
                         "setpgid(child in another session) = -1 EPERM",
                         "setpgid(child after exec) = -1 EACCES",
                         "child: setpgid(parent, 0) = -1 ESRCH")),
    Case("locks", must=("flock(b, EX|NB), another open = -1 EAGAIN",
                        "flock(b, EX|NB): a lost its SH = 0", "flock(-1, 16) = -1 EINVAL",
                        "flock(EX) waits for the holder's close: ok, waited 1",
                        "F_SETLKW waits for the holder's exit: ok, waited 1",
                        "  child F_GETLK W [25,26): F_RDLCK whence 0 start 20 len 10 "
                        "pid of the holder",
                        "  child F_GETLK R [60,100): F_WRLCK whence 0 start 70 len 30 "
                        "pid of the holder",
                        "  child F_GETLK W after the parent closed another fd: F_UNLCK, "
                        "whence 0 start 0 len 0 kept",
                        "EDEADLK exactly once: 1, other errors 0, child status ok 1",
                        "F_OFD_GETLK W on b: F_WRLCK whence 0 start 0 len 10 pid -1",
                        "F_OFD_SETLK l_pid 1 = -1 EINVAL", "F_SETLK W on O_RDONLY = -1 EBADF",
                        "l_start max, len 2 = -1 EOVERFLOW", "F_SETLK bad pointer = -1 EFAULT",
                        "F_SETLKW, signal without SA_RESTART: EINTR, handler ran 1",
                        "flock(EX), signal with SA_RESTART: ok, handler ran 1")),
]
PROGRAM_NAMES = sorted({c.prog for c in CASES})


@pytest.fixture(scope="session")
def guest_binaries(static_cc: Callable[..., Path]) -> dict[str, Path]:
    """Every progs/*.c compiled with `gcc -static` (conftest's static_cc)."""
    found = sorted(p.stem for p in PROGS.glob("*.c"))
    assert set(PROGRAM_NAMES) <= set(found), "a case names a missing program"
    return {name: static_cc((PROGS / f"{name}.c").read_text(), name, flags=CFLAGS)
            for name in found}


@pytest.fixture(scope="session")
def guest_template(tmp_path_factory: pytest.TempPathFactory,
                   guest_binaries: dict[str, Path]) -> Path:
    """A busybox rootfs with every program in /bin and the test data; never run in."""
    rootfs = tmp_path_factory.mktemp("guest-template") / "rootfs"
    make_rootfs(rootfs, extra_binaries=guest_binaries.values())
    populate(rootfs)
    return rootfs


def _argv(case: Case, marker: Path) -> list[str]:
    if case.prog == "escape":
        return [f"/bin/{case.prog}", str(marker), marker.name]
    return [f"/bin/{case.prog}", *case.args]


def _marker(tmp_path: Path) -> Path:
    """A host file right next to the rootfs copies (so `..` from their root reaches it
    on the host, and its absolute host path is known to the program)."""
    marker = tmp_path / "HOST-MARKER"
    marker.write_text(MARKER_TEXT + "\n")
    return marker


def _check_expectations(case: Case, r: Result, where: str, rootfs: Path) -> None:
    lines = r.stdout.splitlines()
    missing = [m for m in case.must if m not in lines]
    assert not missing, f"{where}: missing lines {missing}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert r.code == case.code, f"{where}: exit {r.code}, expected {case.code}\n{r.stdout}"
    if case.prog == "escape":
        _check_escape(r, rootfs, where)


def _check_escape(r: Result, rootfs: Path, where: str) -> None:
    assert MARKER_TEXT not in r.stdout, f"{where}: the host marker was read!\n{r.stdout}"
    assert "HOST-SECRET" not in r.stdout
    outside = rootfs.parent
    leaked = [p.name for p in outside.iterdir() if p.name.startswith("escaped")]
    assert not leaked, f"{where}: created outside the rootfs: {leaked}"
    for name in ("escaped-dir", "escaped-renamed", "escaped-link"):
        assert (rootfs / name).exists() or (rootfs / name).is_symlink(), \
            f"{where}: {name} not created inside the rootfs"


def _diff(native: Result, quark: Result) -> str:
    diff = "".join(difflib.unified_diff(native.stdout.splitlines(True),
                                        quark.stdout.splitlines(True), "native", "quark"))
    return (f"exit codes: native {native.code}, quark {quark.code}\n{diff or '(same stdout)'}"
            f"\nquark stderr (tail):\n{quark.stderr[-3000:]}")


@pytest.mark.root
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_native_reference(case: Case, guest_template: Path, tmp_path: Path) -> None:
    rootfs = fresh_copy(guest_template, tmp_path / "native")
    r = run_native(rootfs, _argv(case, _marker(tmp_path)))
    _check_expectations(case, r, "native", rootfs)


@pytest.mark.kvm
@pytest.mark.root
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_differential(case: Case, guest_template: Path, tmp_path: Path,
                      quark_run: Callable[..., Result]) -> None:
    marker = _marker(tmp_path)
    native_root = fresh_copy(guest_template, tmp_path / "native")
    quark_root = fresh_copy(guest_template, tmp_path / "quark")
    native = run_native(native_root, _argv(case, marker))
    _check_expectations(case, native, "native", native_root)
    q = quark_run(quark_root, _argv(case, marker), env=env_args(), cwd="/", timeout=120)
    quark = Result(q.code, q.stdout, q.stderr)
    assert (quark.code, quark.stdout) == (native.code, native.stdout), _diff(native, quark)
    if case.prog == "escape":
        _check_escape(quark, quark_root, "quark")
