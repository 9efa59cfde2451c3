"""OCI lifecycle hooks (runtime-spec config.md, "POSIX-platform Hooks").

Each hook is `{"path": abs, "args": [...], "env": [...], "timeout": seconds}` and runs
with the container's state JSON on stdin. Where they run here:

| hook            | when (quark)                                   | on failure            |
|-----------------|------------------------------------------------|-----------------------|
| prestart        | create, after the sandbox is built (deprecated)| create fails          |
| createRuntime   | create, after the sandbox is built             | create fails          |
| createContainer | create, right after createRuntime              | create fails          |
| startContainer  | start, before pid 1 runs                       | start fails (stopped) |
| poststart       | start, after pid 1 runs                        | warning               |
| poststop        | delete                                         | warning               |

All run on the host, in the sandbox process's namespaces: the container's "namespace"
is a separate kernel in a VM, so a host binary cannot run inside it. startContainer
hooks therefore see the host filesystem, not the container's (documented deviation).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .errors import OciError

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart",
         "poststop")
FATAL = frozenset(("prestart", "createRuntime", "createContainer", "startContainer"))


class HookError(OciError):
    """A hook failed (exit status, timeout, cannot run); one line."""


@dataclass(frozen=True)
class Hook:
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] | None = None
    timeout: int | None = None


def parse_hooks(config: dict[str, Any]) -> dict[str, list[Hook]]:
    """The `hooks` object of config.json, checked. Unknown kinds are ignored."""
    raw = config.get("hooks") or {}
    if not isinstance(raw, dict):
        raise OciError("config.json: hooks must be an object")
    out: dict[str, list[Hook]] = {}
    for kind in KINDS:
        items = raw.get(kind) or []
        if not isinstance(items, list):
            raise OciError(f"config.json: hooks.{kind} must be a list")
        hooks = []
        for i, h in enumerate(items):
            where = f"hooks.{kind}[{i}]"
            if not isinstance(h, dict) or not isinstance(h.get("path"), str):
                raise OciError(f"config.json: {where}.path is missing")
            if not os.path.isabs(h["path"]):
                raise OciError(f"config.json: {where}.path must be absolute: {h['path']!r}")
            args, env, timeout = h.get("args"), h.get("env"), h.get("timeout")
            if args is not None and not (isinstance(args, list)
                                         and all(isinstance(a, str) for a in args)):
                raise OciError(f"config.json: {where}.args must be a list of strings")
            if env is not None and not (isinstance(env, list)
                                        and all(isinstance(e, str) for e in env)):
                raise OciError(f"config.json: {where}.env must be a list of strings")
            if timeout is not None and (not isinstance(timeout, int)
                                        or isinstance(timeout, bool) or timeout <= 0):
                raise OciError(f"config.json: {where}.timeout must be a positive integer")
            hooks.append(Hook(h["path"], tuple(args or ()),
                              None if env is None else tuple(env), timeout))
        out[kind] = hooks
    return out


def run_hook(kind: str, index: int, hook: Hook, state: dict[str, Any]) -> None:
    """Run one hook; raise HookError if it cannot run, times out or exits non-zero."""
    argv = list(hook.args) or [hook.path]
    # runc leaves exec.Cmd.Env nil when the hook has no env: it inherits ours.
    env = (dict(os.environ) if hook.env is None
           else dict(e.split("=", 1) for e in hook.env if "=" in e))
    name = f"{kind} hook #{index} ({hook.path})"
    import subprocess       # only when there are hooks: ~2 ms of every start otherwise
    try:
        proc = subprocess.run(argv, executable=hook.path, input=json.dumps(state).encode(),
                              env=env, capture_output=True, timeout=hook.timeout,
                              close_fds=True)
    except subprocess.TimeoutExpired:
        raise HookError(f"{name} timed out after {hook.timeout}s") from None
    except OSError as e:
        raise HookError(f"{name}: {e.strerror or e}") from e
    if proc.returncode != 0:
        detail = " ".join(proc.stderr.decode(errors="replace").split())[:200]
        how = (f"was killed by signal {-proc.returncode}" if proc.returncode < 0
               else f"exited with status {proc.returncode}")
        raise HookError(f"{name} {how}" + (f": {detail}" if detail else ""))


def run_hooks(kind: str, hooks: dict[str, list[Hook]], state: dict[str, Any],
              warn: Any = None) -> None:
    """Run the hooks of `kind` in order. Fatal kinds raise HookError at the first
    failure; the others report each failure through `warn(message)` and go on."""
    for i, hook in enumerate(hooks.get(kind, ())):
        try:
            run_hook(kind, i, hook, state)
        except HookError as e:
            if kind in FATAL or warn is None:
                raise
            warn(str(e))
