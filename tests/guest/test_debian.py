"""Issue 4's acceptance check: an unmodified Debian bookworm userland under quark gives
the same stdout and exit code as under runc, on the same bundle.

The rootfs is a debootstrap minbase (plus python3 and procps), built once and cached
in /var/cache/quark-test/bookworm (override: QUARK_TEST_BOOKWORM). It is built into
``DIR.tmp`` and renamed, so an existing directory is a complete one; to rebuild, remove
it. Tests never write to it: every run gets its own rootfs, an overlayfs mount whose
lower layer is the cache (or, where overlayfs is unavailable, a hardlink tree of a
per-module `cp -a` copy).

Both runtimes get the same config.json: `runc spec`'s (its mounts: proc, /dev tmpfs,
devpts, shm, mqueue, sysfs, cgroup), no terminal, writable root, hostname "quark",
env PATH only. Where an output is fixed, `test_debian_runc_reference` checks runc gives
it here, so a failure of `test_debian` is quark's. Commands whose output may legitimately
differ (pids beyond pid 1, fd link targets, /dev/core, which runc makes only where the
host has /proc/kcore) are left out or filtered. Per-case outcomes are listed in the
summary (tests/guest/conftest.py).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from quark.oci.defaults import DEFAULT_PATH
from quark.tools.bundle import bundle_config
from tests.guest.harness import Result

CACHE = Path(os.environ.get("QUARK_TEST_BOOKWORM", "/var/cache/quark-test/bookworm"))
DEBOOTSTRAP = ["debootstrap", "--variant=minbase", "--include=python3,procps", "bookworm"]
# Files a complete cache must have (an interrupted build never gets renamed, but a
# directory put there by hand might be something else).
REQUIRED = ("usr/bin/bash", "usr/bin/python3", "usr/bin/ps", "usr/bin/dpkg", "etc/os-release")
RUN_TIMEOUT = 100  # each runtime's run; a hang fails with the output seen so far
BUILD_TIMEOUT = 1800
# pytest-timeout counts fixture setup, and the first test may build the cache (2-3
# minutes): the subprocess timeouts above bound each case instead.
CASE_TIMEOUT = BUILD_TIMEOUT + 3 * RUN_TIMEOUT

PYTHON_SCRIPT = textwrap.dedent("""\
    import hashlib, json, sqlite3, subprocess, threading
    from concurrent.futures import ThreadPoolExecutor

    results, lock = [], threading.Lock()
    def work(n):
        h = hashlib.sha256(str(n).encode()).hexdigest()[:16]
        with lock:
            results.append((n, h))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print(sorted(results))
    with ThreadPoolExecutor(max_workers=4) as pool:
        print(sorted(pool.map(lambda x: x * x, range(20))))

    db = sqlite3.connect(":memory:")
    db.execute("create table t (k integer primary key, v text)")
    db.executemany("insert into t values (?, ?)", results)
    print(db.execute("select count(*), sum(k), min(v) from t").fetchone())

    p = subprocess.run(["sh", "-c", "echo from child; exit 3"], capture_output=True, text=True)
    print(p.returncode, p.stdout.strip())
    print(subprocess.check_output(["python3", "-c", "print(6 * 7)"], text=True).strip())

    doc = {"md5": hashlib.md5(b"abc").hexdigest(), "sha1": hashlib.sha1(b"abc").hexdigest(),
           "blake2": hashlib.blake2b(b"abc", digest_size=8).hexdigest(), "n": len(results)}
    print(json.dumps(doc, sort_keys=True))
    print(json.loads(json.dumps({"b": [1, 2.5, None, True], "a": "\\u00e9"})) ==
          {"a": "\\u00e9", "b": [1, 2.5, None, True]})
""")


class Cmd(NamedTuple):
    argv: list[str]
    expected: str | None  # stdout where it is fixed (checked against runc), else None
    code: int = 0
    name: str = ""
    gap: str = ""         # a known quark gap (issue 4): the case is expected to fail

    @property
    def id(self) -> str:
        return self.name or " ".join(self.argv)

    def param(self) -> Any:
        """The case for parametrize; a known gap is a strict xfail, so fixing it
        turns the suite red until the mark goes (never a silent pass)."""
        marks = [pytest.mark.xfail(reason=self.gap, strict=not self.gap.endswith("(flaky)"))] \
            if self.gap else []
        return pytest.param(self, marks=marks, id=self.id)


# fcntl record locks between two processes (what sqlite3 and dpkg rely on).
LOCKF_SCRIPT = """
import fcntl, os
f = open("/tmp/lockf", "w")
fcntl.lockf(f, fcntl.LOCK_EX)
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    g = open("/tmp/lockf", "w")
    try:
        fcntl.lockf(g, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        print("busy", e.errno, flush=True)
    os.write(w, b"x")
    fcntl.lockf(g, fcntl.LOCK_EX)
    print("free after close", flush=True)
    os._exit(0)
os.read(r, 1)
f.close()
os.waitpid(pid, 0)
"""

COMMANDS = [
    # The list.
    Cmd(["bash", "-c", 'for i in 3 1 2; do echo $i; done | sort | tr "\\n" ,'], "1,2,3,"),
    Cmd(["bash", "-c", "ls -la /usr/bin | wc -l"], None),
    Cmd(["ps", "-eo", "pid,comm"], "    PID COMMAND\n      1 ps\n"),
    Cmd(["python3", "-c", PYTHON_SCRIPT], None, name="python3 threading-subprocess-sqlite3-json-hashlib"),
    Cmd(["sh", "-c", "sleep 0.2 & wait; echo $?"], "0\n"),
    Cmd(["bash", "-c", "timeout 1 sleep 5; echo $?"], "124\n"),
    # What a Debian user tries next.
    Cmd(["bash", "-c", "cat /etc/os-release | head -2"],
        'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'),
    Cmd(["id"], "uid=0(root) gid=0(root) groups=0(root)\n"),
    Cmd(["python3", "-c", "import os; print(os.getcwd(), os.getuid())"], "/ 0\n"),
    Cmd(["bash", "-c", "echo $((2**10)); type ls"], "1024\nls is /usr/bin/ls\n"),
    Cmd(["bash", "-c", "dpkg -l | wc -l"], None),
    # Address spaces made and dropped by the hundred: page-table frames go back to
    # use, and a stale shadow of one (FrameAllocator.retire_tables) once showed here
    # as wrong output, "stack smashing detected" or a segfault in 1 round of 40.
    Cmd(["bash", "-c", 'for i in $(seq 40); do seq 1 5 | xargs -n2 echo | sort -r | tr "\\n" " ";'
         ' echo; done | sort | uniq -c'], "     40 5 3 4 1 2 \n", name="bash 40 rounds of xargs"),
    Cmd(["bash", "-c", "apt-cache policy 2>/dev/null | head -1"], "Package files:\n"),
    Cmd(["env"], None),
    Cmd(["ls", "/proc/self/fd"], "0\n1\n2\n3\n"),
    # A lookup in /proc builds only what it names (fs/proc/fs.py _root_one).
    Cmd(["bash", "-c", "cat /proc/1/comm; test -e /proc/01 || echo no 01;"
         " test -e /proc/4000000 || echo no 4000000; stat -c %u:%g /proc/1 /proc/self/exe"],
        "bash\nno 01\nno 4000000\n0:0\n0:0\n", name="proc lookups"),
    Cmd(["hostname"], "quark\n"),
    Cmd(["uname", "-sm"], "Linux x86_64\n"),
    Cmd(["ls", "/"], None),
    Cmd(["bash", "-c", "ulimit -n"], "1024\n"),
    Cmd(["sh", "-c", "exit 7"], "", 7),
    Cmd(["bash", "-c", "grep -E '^(Name|State|Uid|Gid):' /proc/self/status"],
        "Name:\tgrep\nState:\tR (running)\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n"),
    Cmd(["python3", "-c", ("import sys; print(sys.version_info[:2] >= (3, 11), "
                          "sys.getfilesystemencoding(), sys.stdout.encoding)")],
        "True utf-8 utf-8\n"),
    Cmd(["perl", "-e", 'print join(",", map { $_ * 2 } 1..5), "\\n"'], "2,4,6,8,10\n"),
    Cmd(["bash", "-c", "printf '1 2\\n3 4\\n' | awk '{s += $1 * $2} END {print s}'"], "14\n"),
    Cmd(["sed", "-n", "1p", "/etc/passwd"], "root:x:0:0:root:/root:/bin/bash\n"),
    Cmd(["date", "-u", "-d", "@0"], "Thu Jan  1 00:00:00 UTC 1970\n"),
    Cmd(["bash", "-c", "sha256sum /usr/bin/bash | cut -c1-16; stat -c '%a %U %n' /tmp /root"],
        None),
    Cmd(["bash", "-c", ("cd /tmp && mkdir d && echo x > d/f && tar cf t.tar d && rm -r d && "
                       "tar xf t.tar && cat d/f && tar tf t.tar")], "x\nd/\nd/f\n"),
    Cmd(["bash", "-c", "seq 1 5 | xargs -n2 echo | sort -r"], "5\n3 4\n1 2\n"),
    Cmd(["bash", "-c", "f() { return 3; }; f; echo $?; (exit 4); echo $?; false || echo no"],
        "3\n4\nno\n"),
    Cmd(["bash", "-c", "sleep 5 & kill $!; wait $!; echo $?"], "143\n"),
    Cmd(["bash", "-c", "trap 'echo trapped' USR1; kill -USR1 $$; echo after"], "trapped\nafter\n"),
    Cmd(["bash", "-c", "read x < <(echo process substitution); echo $x"],
        "process substitution\n"),
    # `timeout`: a FIFO bug must fail the comparison, not hang the test.
    Cmd(["bash", "-c", "mkfifo /tmp/p && { echo via fifo > /tmp/p & } && timeout 10 cat /tmp/p"],
        "via fifo\n"),
    Cmd(["bash", "-c", "exec 3>/tmp/lock; flock -n 3 && echo locked"], "locked\n"),
    # flock(1) on the path is another open file description: it must conflict.
    Cmd(["bash", "-c", ("exec 3>/tmp/lock; flock 3; flock -n /tmp/lock true; echo $?; "
                       "flock -u 3; flock -n /tmp/lock echo free")], "1\nfree\n",
        name="flock contention"),
    Cmd(["python3", "-c", LOCKF_SCRIPT], "busy 11\nfree after close\n", name="python3 lockf"),
    # runc adds /dev/core -> /proc/kcore only where the host has /proc/kcore.
    Cmd(["bash", "-c", "ls /dev | grep -vx core"], None),
    # `timeout`: a Pool whose workers died waits forever.
    Cmd(["timeout", "30", "python3", "-c",
         "import multiprocessing as m; print(m.Pool(2).map(abs, [-1, -2, -3]))"],
        "[1, 2, 3]\n"),
    Cmd(["python3", "-c", ("import multiprocessing as m; v = m.Value('i', 0); "
                          "p = m.Process(target=lambda: setattr(v, 'value', 42)); "
                          "p.start(); p.join(); print(v.value, p.exitcode)")], "42 0\n"),
    Cmd(["python3", "-c", ("import socket; a, b = socket.socketpair(); a.sendall(b'ping'); "
                          "print(b.recv(4))")], "b'ping'\n"),
    Cmd(["python3", "-c", ("import asyncio\nasync def f(i):\n    await asyncio.sleep(0.01 * i)\n"
                          "    return i\nasync def main():\n"
                          "    print(await asyncio.gather(*(f(i) for i in range(5))))\n"
                          "asyncio.run(main())")], "[0, 1, 2, 3, 4]\n"),
    Cmd(["python3", "-c", ("import tempfile, os; d = tempfile.mkdtemp(); "
                          "open(os.path.join(d, 'f'), 'w').write('x'); print(os.listdir(d))")],
        "['f']\n"),
    Cmd(["bash", "-c", "echo hi > /dev/stderr; echo out; ls -l /proc/self/exe | sed 's/.*-> //'"],
        "out\n/usr/bin/ls\n"),
]


# -- the cached rootfs -----------------------------------------------------------------

def _incomplete(rootfs: Path) -> list[str]:
    return [f for f in REQUIRED if not (rootfs / f).exists()]


def _mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` (debootstrap mounts /proc, /sys in its target)."""
    prefix = str(path)
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mnt = line.split()[4].replace("\\040", " ")
            if mnt == prefix or mnt.startswith(prefix + "/"):
                found.append(mnt)
    return found


def _remove_partial(tmp: Path) -> None:
    """Remove a leftover half-built rootfs, unmounting what an interrupted debootstrap
    left mounted inside it first (rmtree must never walk into the host's /proc or /dev)."""
    for mnt in sorted(_mounts_under(tmp), key=len, reverse=True):
        subprocess.run(["umount", "-l", mnt], check=False, capture_output=True)
    if _mounts_under(tmp):
        pytest.fail(f"{tmp}: cannot unmount {_mounts_under(tmp)}; remove it by hand")
    shutil.rmtree(tmp, ignore_errors=True)


def _build(cache: Path) -> None:
    tmp = cache.with_name(cache.name + ".tmp")
    if tmp.exists():
        _remove_partial(tmp)
    cmd = [*DEBOOTSTRAP, str(tmp)]
    mirror = os.environ.get("QUARK_DEBIAN_MIRROR")
    if mirror:
        cmd.append(mirror)
    print(f"building the Debian rootfs cache: {' '.join(cmd)} (2-3 minutes)")
    try:
        p = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=BUILD_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        _remove_partial(tmp)
        pytest.fail(f"debootstrap timed out after {BUILD_TIMEOUT} s")
    if p.returncode != 0:
        log = tmp / "debootstrap" / "debootstrap.log"
        detail = log.read_text(errors="replace")[-3000:] if log.exists() else p.stderr[-3000:]
        _remove_partial(tmp)
        pytest.fail(f"debootstrap failed ({p.returncode}):\n{p.stdout[-2000:]}\n{detail}")
    missing = _incomplete(tmp)
    if missing:
        _remove_partial(tmp)
        pytest.fail(f"debootstrap's rootfs lacks {missing}")
    os.rename(tmp, cache)


@pytest.fixture(scope="session")
def bookworm_cache() -> Path:
    """The cached bookworm minbase rootfs (built on first use). Read-only for tests."""
    if os.geteuid() != 0:
        pytest.skip("[root] building and running the Debian rootfs needs root")
    if not CACHE.exists():
        if shutil.which("debootstrap") is None:
            reason = (f"debootstrap is not installed and {CACHE} does not exist "
                      "(scripts/setup-debian.sh installs debootstrap)")
            print(reason)
            pytest.skip(reason)
        CACHE.parent.mkdir(parents=True, exist_ok=True)
        with open(CACHE.parent / f".{CACHE.name}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another pytest may be building it
            if not CACHE.exists():
                _build(CACHE)
    missing = _incomplete(CACHE)
    if missing:
        pytest.fail(f"{CACHE} lacks {missing}: remove it so the tests rebuild it")
    return CACHE


# -- per-run rootfs and bundles --------------------------------------------------------

# QUARK_TEST_NO_OVERLAY=1 forces the copy fallback.
_overlay_works: bool | None = False if os.environ.get("QUARK_TEST_NO_OVERLAY") else None


def _mount_overlay(lower: Path, work: Path, target: Path) -> bool:
    global _overlay_works
    if _overlay_works is False:
        return False
    (work / "upper").mkdir(parents=True)
    (work / "work").mkdir()
    p = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={lower},upperdir={work / 'upper'},workdir={work / 'work'}",
                        str(target)], check=False, capture_output=True, text=True)
    if p.returncode != 0 and _overlay_works is None:
        print(f"overlayfs unavailable ({p.stderr.strip()}): using copies of the rootfs")
    _overlay_works = p.returncode == 0
    return _overlay_works


@pytest.fixture(scope="module")
def copy_source(bookworm_cache: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> Callable[[], Path]:
    """Where overlayfs fails: one `cp -a` of the cache per module (made on demand)."""
    made: list[Path] = []

    def get() -> Path:
        if not made:
            dest = tmp_path_factory.mktemp("bookworm-copy") / "rootfs"
            subprocess.run(["cp", "-a", str(bookworm_cache), str(dest)], check=True)
            made.append(dest)
        return made[0]

    return get


@pytest.fixture
def debian_bundle(bookworm_cache: Path, copy_source: Callable[[], Path],
                  tmp_path: Path) -> Iterator[Callable[[str, list[str]], Path]]:
    """debian_bundle(name, argv) -> a bundle with a private writable view of the cache."""
    mounted: list[Path] = []

    def make(name: str, argv: list[str]) -> Path:
        bundle = tmp_path / name
        rootfs = bundle / "rootfs"
        rootfs.mkdir(parents=True)
        if _mount_overlay(bookworm_cache, tmp_path / f"{name}-overlay", rootfs):
            mounted.append(rootfs)
        else:
            rootfs.rmdir()
            subprocess.run(["cp", "-al", str(copy_source()), str(rootfs)], check=True)
        config = bundle_config(argv, env=[DEFAULT_PATH])
        config["hostname"] = "quark"
        (bundle / "config.json").write_text(json.dumps(config, indent="\t") + "\n")
        return bundle

    yield make
    for rootfs in mounted:
        subprocess.run(["umount", str(rootfs)], check=False, capture_output=True)
        if _mounts_under(rootfs):
            subprocess.run(["umount", "-l", str(rootfs)], check=False, capture_output=True)


# -- the runtimes ----------------------------------------------------------------------

def _runc(bundle: Path, state: Path) -> Result:
    cid = f"quark-test-{uuid.uuid4().hex[:12]}"
    try:
        p = subprocess.run(["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
                           check=False, capture_output=True, text=True, timeout=RUN_TIMEOUT,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"runc timed out after {RUN_TIMEOUT}s: stdout={e.stdout!r}")
    finally:
        subprocess.run(["runc", "--root", str(state), "delete", "--force", cid],
                       check=False, capture_output=True)
    return Result(p.returncode, p.stdout, p.stderr)


def _quark(quark_cmd: Callable[..., Result], bundle: Path, state: Path) -> Result:
    cid = f"quark-test-{uuid.uuid4().hex[:12]}"
    try:
        return quark_cmd(["--root", str(state), "run", "--bundle", str(bundle), cid],
                         timeout=RUN_TIMEOUT)
    finally:
        quark_cmd(["--root", str(state), "delete", "--force", cid], timeout=60)


def _show(r: Result) -> str:
    return f"code {r.code}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr[-3000:]}"


# -- the tests -------------------------------------------------------------------------

@pytest.mark.root
@pytest.mark.runc
@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("cmd", [c for c in COMMANDS if c.expected is not None],
                         ids=[c.id for c in COMMANDS if c.expected is not None])
def test_debian_runc_reference(cmd: Cmd, debian_bundle: Callable[[str, list[str]], Path],
                               tmp_path: Path) -> None:
    """The fixed expectations hold under runc here (so a quark mismatch is quark's)."""
    r = _runc(debian_bundle("runc", cmd.argv), tmp_path / "runc-state")
    assert (r.code, r.stdout) == (cmd.code, cmd.expected), _show(r)


@pytest.mark.kvm
@pytest.mark.root
@pytest.mark.runc
@pytest.mark.timeout(CASE_TIMEOUT)
@pytest.mark.parametrize("cmd", [c.param() for c in COMMANDS])
def test_debian(cmd: Cmd, debian_bundle: Callable[[str, list[str]], Path], tmp_path: Path,
                quark_cmd: Callable[..., Result]) -> None:
    """Same stdout and exit code under `quark run` as under `runc run`."""
    r = _runc(debian_bundle("runc", cmd.argv), tmp_path / "runc-state")
    q = _quark(quark_cmd, debian_bundle("quark", cmd.argv), tmp_path / "quark-state")
    assert (q.code, q.stdout) == (r.code, r.stdout), f"runc: {_show(r)}\nquark: {_show(q)}"
