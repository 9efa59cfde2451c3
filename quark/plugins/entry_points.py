"""The ``quark`` entry-point group, read through a cache.

Importing importlib.metadata costs ~27 ms here (email, zipfile, csv, ...) and its
scan of every installed distribution ~6 ms more: a fifth of a sandbox's start
without a template, before its kernel exists. So the scan's result is kept in
``$QUARK_CACHE_DIR/entry-points-<key>.json`` (default /var/cache/quark, or
~/.cache/quark for other users; ``off``: no cache) together with the identity
(device, inode, mtime, size) of every sys.path entry and of each ``entry_points.txt``
it came from. Installing, removing or upgrading a distribution changes one of them
(pip writes a new ``*.dist-info`` directory), and the next reader scans again.
``<key>`` is a checksum of sys.path: a checkout's bin/quark and an installed quark
each keep their own file instead of replacing each other's (a template that starts
after a miss keeps importlib.metadata, ~0.4 MiB, for its whole life, and so does
every run it forks).

The cache names modules to import, so it is used only from a directory and a file
owned by this user and writable by no one else: a directory others could write is
not used at all (each reader scans), a file others could write is not read and is
replaced (atomically, in our own directory).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

GROUP = "quark"
ENV_DIR = "QUARK_CACHE_DIR"
ENV_PLUGINS = "QUARK_PLUGINS"
FORMAT = 1


@dataclass(frozen=True)
class Entry:
    """One entry point: what importlib.metadata.EntryPoint gives the manager."""

    name: str
    value: str                  # "package.module:attr", as in entry_points.txt
    dist: str | None = None     # its distribution's name and version
    version: str | None = None

    def load(self) -> Any:
        """The object named by ``value`` (importlib.metadata's rule: the module,
        then each dotted attribute after the colon; extras are ignored)."""
        module, _, attrs = self.value.split("[", 1)[0].partition(":")
        obj: Any = importlib.import_module(module.strip())
        for attr in filter(None, attrs.strip().split(".")):
            obj = getattr(obj, attr)
        return obj


def wanted() -> set[str] | None:
    """Entry-point names $QUARK_PLUGINS allows (``a,b``; ``none``: none); None for all."""
    text = os.environ.get(ENV_PLUGINS)
    if text is None or text.strip() == "":
        return None
    names = {n.strip() for n in text.split(",") if n.strip()}
    return set() if names == {"none"} else names


def cache_dir() -> str | None:
    value = os.environ.get(ENV_DIR, "")
    if value == "off":
        return None
    if value:
        return value
    if os.geteuid() == 0:
        return "/var/cache/quark"
    home = os.environ.get("HOME", "")
    return os.path.join(home, ".cache", "quark") if home else None


def file_name() -> str:
    """This sys.path's cache file. The key is the path list's bytes modulo a
    Mersenne prime: a few µs, where importing hashlib or binascii costs ~0.5 ms, and
    a file read under another path list is still checked against its "paths"."""
    key = int.from_bytes(os.fsencode("\0".join(sys.path)), "big") % ((1 << 61) - 1)
    return f"entry-points-{key:016x}.json"


def entries() -> list[Entry]:
    """The ``quark`` group's entry points, sorted by name."""
    directory = cache_dir()
    paths = _path_ids()
    name = file_name()
    if directory is not None:
        cached = _read(directory, name, paths)
        if cached is not None:
            return cached
    found, sources = _scan()
    if directory is not None:
        _write(directory, name, paths, found, sources)
    return found


def _identity(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size]


def _path_ids() -> list[Any]:
    return [[p, _identity(p or ".")] for p in sys.path]


def _scan() -> tuple[list[Entry], list[str]]:
    import importlib.metadata

    found, sources = [], set()
    for ep in importlib.metadata.entry_points(group=GROUP):
        dist = ep.dist
        found.append(Entry(ep.name, ep.value, dist.name if dist else None,
                           dist.version if dist else None))
        # PathDistribution (every installed distribution) keeps its directory here.
        where = getattr(dist, "_path", None)
        if where is not None:
            sources.add(os.path.join(str(where), "entry_points.txt"))
    found.sort(key=lambda e: e.name)
    return found, sorted(sources)


def _private(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _read(directory: str, name: str, paths: list[Any]) -> list[Entry] | None:
    path = os.path.join(directory, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not _private(os.stat(directory)) or not _private(os.fstat(fd)):
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            doc = json.loads(f.read(1 << 20))
        if doc.get("format") != FORMAT or doc.get("paths") != paths:
            return None
        if any(_identity(src) != ident for src, ident in doc["sources"]):
            return None
        return [Entry(*e) for e in doc["entries"]]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    finally:
        os.close(fd)


def _write(directory: str, name: str, paths: list[Any], found: list[Entry],
           sources: list[str]) -> None:
    """Best effort: a cache that cannot be written only costs the next scan."""
    doc = {"format": FORMAT, "paths": paths,
           "sources": [[src, _identity(src)] for src in sources],
           "entries": [[e.name, e.value, e.dist, e.version] for e in found]}
    tmp = os.path.join(directory, f".{name}.{os.getpid()}")
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        if not _private(os.stat(directory)):
            return
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, os.path.join(directory, name))
        _prune(directory)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass


KEEP = 8        # cache files kept (the newest): a test suite makes a sys.path per test


def _prune(directory: str) -> None:
    try:
        names = [n for n in os.listdir(directory)
                 if n.startswith("entry-points-") and n.endswith(".json")]
        if len(names) <= KEEP:
            return
        aged = sorted(names, key=lambda n: os.stat(os.path.join(directory, n)).st_mtime_ns)
        for n in aged[:-KEEP]:
            os.unlink(os.path.join(directory, n))
    except OSError:
        pass        # another writer pruned first
