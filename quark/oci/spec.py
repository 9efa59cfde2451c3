"""Read and check an OCI bundle's config.json (runtime-spec 1.0.x and 1.1.x).

The result is a `SandboxSpec`: the facts the sandbox needs, already checked, with
paths made absolute. The whole document stays available as `raw` for the parts a
later layer interprets itself (hooks, capabilities, linux.resources ...).

Checks follow the runtime-spec's MUSTs that matter to a runtime starting a process
(process.args non-empty, cwd absolute, no duplicate rlimits or namespaces, root
present). Fields we do not model are left alone, as the spec asks ("runtimes MUST
ignore unknown properties"). Every failure is one `OciError` line naming the field.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple

from .defaults import default_spec
from .errors import OciError

__all__ = [
    "MountSpec", "Namespace", "OciError", "Rlimit", "SandboxSpec",
    "default_spec", "load_bundle", "parse_config", "validate_id",
]

# runc's rule for container ids (libcontainer: ^[\w+-\.]+$), and not "." or "..".
_ID_RE = re.compile(r"^[\w+\-.]+$")

RLIMIT_TYPES = frozenset(
    "RLIMIT_" + n for n in (
        "AS CORE CPU DATA FSIZE LOCKS MEMLOCK MSGQUEUE NICE NOFILE NPROC RSS RTPRIO "
        "RTTIME SIGPENDING STACK"
    ).split()
)
NAMESPACE_TYPES = frozenset(
    ("pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time")
)


class MountSpec(NamedTuple):
    """One entry of config.json `mounts` (`type` and `source` may be empty)."""

    destination: str
    type: str
    source: str
    options: tuple[str, ...]


class Rlimit(NamedTuple):
    """One entry of process.rlimits; `type` is the name, e.g. "RLIMIT_NOFILE"."""

    type: str
    hard: int
    soft: int


class Namespace(NamedTuple):
    """One entry of linux.namespaces; `path` is None for "create a new one"."""

    type: str
    path: str | None


@dataclass(frozen=True)
class SandboxSpec:
    """A checked container configuration. Sequences are tuples: the spec is immutable.

    `bundle` is None for a container made without a bundle (`quark do`). `rootfs` is
    absolute. `env` holds "KEY=VALUE" strings in order, as execve(2) takes them.
    """

    id: str
    bundle: Path | None
    rootfs: Path
    readonly: bool
    args: tuple[str, ...]
    env: tuple[str, ...]
    cwd: str
    uid: int
    gid: int
    additional_gids: tuple[int, ...] = ()
    umask: int | None = None
    terminal: bool = False
    no_new_privileges: bool = False
    hostname: str = ""
    mounts: tuple[MountSpec, ...] = ()
    rlimits: tuple[Rlimit, ...] = ()
    namespaces: tuple[Namespace, ...] = ()
    netns_path: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)
    # A new network namespace is handed to the network plugins (net_bridge) to wire;
    # False: it stays empty, loopback only (see wire_network_default).
    wire_network: bool = True
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


# Whether the network plugins wire a new network namespace: "plugins" (net_bridge
# gives it a veth on the bridge) or "none" (it stays empty, loopback only).
NETWORK_ANNOTATION = "org.quark.network"
NETWORK_CHOICES = ("plugins", "none")


def wire_network_default(spec: SandboxSpec, wire: bool) -> SandboxSpec:
    """``spec`` with the command's default for wiring a new network namespace, unless
    its NETWORK_ANNOTATION chose. ``run`` (a person) wires; ``create`` does not:
    podman, containerd, docker and CRI call create, and there a new namespace
    without a path means no network (``--network=none``), which runc, runsc and
    Kata leave empty. Their networks come as a namespace path, or from a hook."""
    if NETWORK_ANNOTATION in spec.annotations:
        return spec
    return replace(spec, wire_network=wire)


def network_entry(spec: Any) -> Namespace | None:
    """The ``network`` entry of linux.namespaces, or None (path None: quark makes a
    new namespace)."""
    return next((n for n in getattr(spec, "namespaces", ()) if n.type == "network"), None)


def validate_id(container_id: str) -> str:
    """Return `container_id` if runc would accept it, else raise OciError."""
    if not container_id or container_id in (".", "..") or not _ID_RE.match(container_id):
        raise OciError(f"invalid container id {container_id!r}: "
                       "use letters, digits, '_', '+', '-' and '.'")
    return container_id


def load_bundle(bundle: str | os.PathLike[str], container_id: str) -> SandboxSpec:
    """Read `<bundle>/config.json` and check it. Raises OciError."""
    validate_id(container_id)
    bundle = Path(os.path.abspath(bundle))
    if not bundle.exists():
        raise OciError(f"bundle directory {bundle} does not exist")
    if not bundle.is_dir():
        raise OciError(f"bundle {bundle} is not a directory")
    path = bundle / "config.json"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise OciError(f"no config.json in bundle {bundle}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise OciError(f"reading {path}: {getattr(e, 'strerror', None) or e}") from e
    try:
        config = json.loads(text)
    except json.JSONDecodeError as e:
        raise OciError(
            f"{path}: invalid JSON at line {e.lineno} column {e.colno}: {e.msg}"
        ) from None
    return parse_config(config, bundle=bundle, container_id=container_id)


# -- typed field access: every message names the JSON path ---------------------------

_JSON_TYPE = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
              int: "an integer"}


def _typename(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return _JSON_TYPE.get(type(v), type(v).__name__)


def _get(obj: dict[str, Any], key: str, typ: type, where: str, default: Any = None,
         required: bool = False) -> Any:
    name = f"{where}.{key}" if where else key
    if key not in obj or (obj[key] is None and not required):
        if required:
            raise OciError(f"config.json: {name} is missing")
        return default
    v = obj[key]
    # bool is a subclass of int in Python, not in JSON.
    ok = isinstance(v, typ) and not (typ is int and isinstance(v, bool))
    if not ok:
        raise OciError(f"config.json: {name} must be {_JSON_TYPE[typ]}, not {_typename(v)}")
    return v


def _list_of(obj: dict[str, Any], key: str, typ: type, where: str) -> list[Any]:
    items: list[Any] = _get(obj, key, list, where, default=[])
    for i, v in enumerate(items):
        if not isinstance(v, typ) or (typ is int and isinstance(v, bool)):
            raise OciError(f"config.json: {where}.{key}[{i}] must be {_JSON_TYPE[typ]}, "
                           f"not {_typename(v)}")
    return items


def _uint(obj: dict[str, Any], key: str, where: str, default: int = 0,
          bits: int = 32) -> int:
    v: int = _get(obj, key, int, where, default=default)
    if not 0 <= v < (1 << bits):
        raise OciError(f"config.json: {where}.{key} is out of range: {v}")
    return v


# -- the sections ---------------------------------------------------------------------

def _root(config: dict[str, Any], bundle: Path | None) -> tuple[Path, bool]:
    root = _get(config, "root", dict, "", required=True)
    path = _get(root, "path", str, "root", required=True)
    if not path:
        raise OciError("config.json: root.path is empty")
    if not os.path.isabs(path):
        if bundle is None:
            raise OciError(f"root.path {path!r} must be absolute without a bundle")
        path = os.path.join(bundle, path)
    rootfs = Path(os.path.normpath(path))
    if not rootfs.exists():
        raise OciError(f"rootfs {rootfs} does not exist")
    if not rootfs.is_dir():
        raise OciError(f"rootfs {rootfs} is not a directory")
    return rootfs, bool(_get(root, "readonly", bool, "root", default=False))


def _rlimits(process: dict[str, Any]) -> tuple[Rlimit, ...]:
    out: list[Rlimit] = []
    seen: set[str] = set()
    for i, r in enumerate(_list_of(process, "rlimits", dict, "process")):
        where = f"process.rlimits[{i}]"
        typ = _get(r, "type", str, where, required=True)
        if typ not in RLIMIT_TYPES:
            raise OciError(f"config.json: {where}.type {typ!r} is not a known rlimit")
        if typ in seen:
            raise OciError(f"config.json: {where}: duplicate rlimit {typ}")
        seen.add(typ)
        hard = _uint(r, "hard", where, bits=64)
        soft = _uint(r, "soft", where, bits=64)
        if soft > hard:
            raise OciError(f"config.json: {where}: soft limit {soft} exceeds hard limit {hard}")
        out.append(Rlimit(typ, hard, soft))
    return tuple(out)


def _mounts(config: dict[str, Any]) -> tuple[MountSpec, ...]:
    out = []
    for i, m in enumerate(_list_of(config, "mounts", dict, "")):
        where = f"mounts[{i}]"
        dest = _get(m, "destination", str, where, required=True)
        if not dest.startswith("/"):
            raise OciError(f"config.json: {where}.destination must be an absolute path, "
                           f"got {dest!r}")
        out.append(MountSpec(
            destination=os.path.normpath(dest),
            type=_get(m, "type", str, where, default=""),
            source=_get(m, "source", str, where, default=""),
            options=tuple(_list_of(m, "options", str, where)),
        ))
    return tuple(out)


def _namespaces(linux: dict[str, Any]) -> tuple[Namespace, ...]:
    out: list[Namespace] = []
    for i, ns in enumerate(_list_of(linux, "namespaces", dict, "linux")):
        where = f"linux.namespaces[{i}]"
        typ = _get(ns, "type", str, where, required=True)
        if typ not in NAMESPACE_TYPES:
            raise OciError(f"config.json: {where}.type {typ!r} is not a namespace type")
        if any(n.type == typ for n in out):
            raise OciError(f"config.json: {where}: duplicate {typ} namespace")
        path = _get(ns, "path", str, where) or None
        if path is not None and not os.path.exists(path):
            raise OciError(f"config.json: {where}: {typ} namespace path {path} does not exist")
        out.append(Namespace(typ, path))
    return tuple(out)


def _annotations(config: dict[str, Any]) -> dict[str, str]:
    ann = _get(config, "annotations", dict, "", default={})
    for k, v in ann.items():
        if not isinstance(v, str):
            raise OciError(f"config.json: annotations[{k!r}] must be a string, "
                           f"not {_typename(v)}")
    net = ann.get(NETWORK_ANNOTATION)
    if net is not None and net not in NETWORK_CHOICES:
        raise OciError(f"config.json: annotations[{NETWORK_ANNOTATION!r}] must be "
                       f"{' or '.join(map(repr, NETWORK_CHOICES))}, not {net!r}")
    return dict(ann)


def parse_config(config: Any, *, bundle: Path | None, container_id: str) -> SandboxSpec:
    """Check a config.json document (already decoded) and build the SandboxSpec.

    `bundle` is the absolute bundle directory, or None when `root.path` is absolute
    and there is no bundle (`quark do`).
    """
    if not isinstance(config, dict):
        raise OciError(f"config.json: the document must be an object, not {_typename(config)}")
    version = _get(config, "ociVersion", str, "", default="")
    if version and not version.startswith("1."):
        raise OciError(f"config.json: unsupported ociVersion {version!r} (need 1.x)")

    rootfs, readonly = _root(config, bundle)

    process = _get(config, "process", dict, "", required=True)
    args = _list_of(process, "args", str, "process")
    if not args:
        raise OciError("config.json: process.args is missing or empty")
    if not args[0]:
        raise OciError("config.json: process.args[0] is empty")
    env = _list_of(process, "env", str, "process")
    for i, e in enumerate(env):
        if "=" not in e or e.startswith("="):
            raise OciError(f"config.json: process.env[{i}] is not KEY=VALUE: {e!r}")
    cwd = _get(process, "cwd", str, "process", default="/") or "/"
    if not cwd.startswith("/"):
        raise OciError(f"config.json: process.cwd must be an absolute path, got {cwd!r}")

    user = _get(process, "user", dict, "process", default={})
    umask = _get(user, "umask", int, "process.user")
    if umask is not None and not 0 <= umask <= 0o777:
        raise OciError(f"config.json: process.user.umask is out of range: {umask}")
    gids = _list_of(user, "additionalGids", int, "process.user")
    if any(not 0 <= g < 1 << 32 for g in gids):
        raise OciError("config.json: process.user.additionalGids has a value out of range")

    linux = _get(config, "linux", dict, "", default={})
    namespaces = _namespaces(linux)
    netns = next((n.path for n in namespaces if n.type == "network"), None)
    annotations = _annotations(config)

    return SandboxSpec(
        id=validate_id(container_id),
        bundle=bundle,
        rootfs=rootfs,
        readonly=readonly,
        args=tuple(args),
        env=tuple(env),
        cwd=os.path.normpath(cwd),
        uid=_uint(user, "uid", "process.user"),
        gid=_uint(user, "gid", "process.user"),
        additional_gids=tuple(gids),
        umask=umask,
        terminal=_get(process, "terminal", bool, "process", default=False),
        no_new_privileges=_get(process, "noNewPrivileges", bool, "process", default=False),
        hostname=_get(config, "hostname", str, "", default=""),
        mounts=_mounts(config),
        rlimits=_rlimits(process),
        namespaces=namespaces,
        netns_path=netns,
        annotations=annotations,
        wire_network=annotations.get(NETWORK_ANNOTATION) != "none",
        raw=config,
    )
