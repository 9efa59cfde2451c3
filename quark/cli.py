"""The `quark` command: runc's command line (global flags, then a command).

Thin by design: parse argv, call quark.oci / quark.sandbox, print, return the exit
status. Each command is a `_cmd_<name>(ns, cfg) -> int` plus a parser builder in
COMMANDS; runc's lifecycle commands (create, start, state, kill, delete, exec, ...)
slot in the same way.

Failures print one line, `quark: <message>`, on stderr (and one record to the log,
JSON with --log-format json, as containerd and podman read it) and exit 1; the
traceback only with --debug. Heavy modules (structlog, uvloop, the kernel) are
imported only by the commands that use them.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .template.client import GLOBAL_VALUED

if TYPE_CHECKING:
    from .config import Config
    from .oci.spec import SandboxSpec

    SubParsers = argparse._SubParsersAction[argparse.ArgumentParser]

DEFAULT_ROOT = "/run/quark"
SPEC_VERSION = "1.1.0"
EXIT_FAILURE = 1


class UsageError(Exception):
    """A command line that cannot be acted on (one line, exit status 1)."""


# Set by the commands after which this process was a sandbox: see entry().
_sandbox_ran = False


# -- commands --------------------------------------------------------------------------

def _run_sandbox(spec: SandboxSpec, cfg: Config, pid_file: str | None) -> int:
    """`quark do`: hand the checked spec to the sandbox (no state directory) and
    turn its result into an exit status."""
    from .log import get_logger, setup_logging

    setup_logging(cfg.log)
    get_logger("cli").info("run", id=spec.id, bundle=str(spec.bundle), args=list(spec.args))
    from .sandbox.process import run_sandbox

    global _sandbox_ran
    _sandbox_ran = True
    status = int(run_sandbox(spec, pid_file=pid_file, config=cfg))
    # run_sandbox returns the status a shell would show (128+n for a signal death);
    # a negative value (subprocess convention: -signal) is converted the same way.
    return 128 - status if status < 0 else status


def _abs_or_none(path: str | None) -> str | None:
    return os.path.abspath(path) if path else None


def _cmd_run(ns: argparse.Namespace, cfg: Config) -> int:
    from .oci import lifecycle
    from .oci.spec import load_bundle

    spec = load_bundle(ns.bundle or os.getcwd(), ns.id)
    if not ns.detach:
        _early_worker(spec)
    _lifecycle_logging(cfg)
    from .log import phase

    phase("bundle")
    global _sandbox_ran
    _sandbox_ran = not ns.detach
    return lifecycle.run(spec, cfg, ns.root, pid_file=_abs_or_none(ns.pid_file),
                         console_socket=ns.console_socket, detach=ns.detach, keep=ns.keep,
                         preserve_fds=ns.preserve_fds, systemd_cgroup=ns.systemd_cgroup)


def _early_worker(spec: SandboxSpec) -> None:
    """This process is about to become a sandbox with a new network namespace that
    a plugin may wire: fork its worker now, while it is small (see
    quark.template.worker.start). A template's run has one already."""
    mine = sys.modules.get("quark.template.worker")
    if mine is not None and mine.available():
        return
    from .oci.spec import network_entry
    entry = network_entry(spec)
    if entry is None or entry.path or not spec.wire_network:
        return
    from .plugins.entry_points import entries, wanted
    if wanted() == set() or not entries():
        return
    from .template import worker
    try:
        worker.start()
    except OSError:
        pass            # the plugins' helpers do it the slow way


def _lifecycle_logging(cfg: Config) -> None:
    from .log import setup_logging

    setup_logging(cfg.log)


def _cmd_create(ns: argparse.Namespace, cfg: Config) -> int:
    from .oci import lifecycle
    from .oci.spec import load_bundle, wire_network_default

    spec = wire_network_default(load_bundle(ns.bundle or os.getcwd(), ns.id), False)
    _lifecycle_logging(cfg)
    return lifecycle.create(spec, cfg, ns.root, pid_file=_abs_or_none(ns.pid_file),
                            console_socket=ns.console_socket, preserve_fds=ns.preserve_fds,
                            systemd_cgroup=ns.systemd_cgroup)


def _cmd_start(ns: argparse.Namespace, cfg: Config) -> int:
    from .oci import lifecycle

    _lifecycle_logging(cfg)
    return lifecycle.start(ns.root, ns.id)


def _cmd_state(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .oci import lifecycle

    print(json.dumps(lifecycle.state(ns.root, ns.id), indent="  "))
    return 0


def _cmd_kill(ns: argparse.Namespace, cfg: Config) -> int:
    from .oci import lifecycle

    _lifecycle_logging(cfg)
    lifecycle.kill(ns.root, ns.id, lifecycle.parse_signal(ns.signal), ns.all)
    return 0


def _cmd_delete(ns: argparse.Namespace, cfg: Config) -> int:
    from .oci import lifecycle

    _lifecycle_logging(cfg)
    lifecycle.delete(ns.root, ns.id, force=ns.force)
    return 0


def _cmd_pause(ns: argparse.Namespace, cfg: Config) -> int:
    from .oci import lifecycle

    lifecycle.pause(ns.root, ns.id, resume=ns.command_name == "resume")
    return 0


def _cmd_exec(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .oci.exec import build_process, exec_process
    from .oci.state import StateDir

    _lifecycle_logging(cfg)
    st = StateDir(ns.root, ns.id).load()
    try:
        with open(os.path.join(st.bundle, "config.json"), encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        config = {}
    for e in ns.env:
        if "=" not in e or e.startswith("="):
            raise UsageError(f"--env {e!r}: expected KEY=VALUE")
    proc = build_process(config, st.rootfs, process_file=ns.process, args=ns.command,
                         env=ns.env, cwd=ns.cwd, user=ns.user, tty=ns.tty,
                         additional_gids=ns.additional_gids)
    return exec_process(ns.root, ns.id, proc, detach=ns.detach,
                        pid_file=_abs_or_none(ns.pid_file), console_socket=ns.console_socket)


def _cmd_ps(ns: argparse.Namespace, cfg: Config) -> int:
    import json
    import subprocess

    from .oci import lifecycle

    st, _guest = lifecycle.container_pids(ns.root, ns.id)
    # The guest's processes are not host processes: the sandbox process stands for
    # all of them (it is the one to signal, and the one using CPU and memory).
    pids = [st.pid] if st.live_status() != "stopped" else []
    if ns.format == "json":
        print(json.dumps(pids))
        return 0
    out = subprocess.run(["ps", *(ns.command or ["-ef"])], capture_output=True, text=True,
                         check=False)
    lines = out.stdout.splitlines()
    if not lines:
        return 0
    header = lines[0].split()
    col = header.index("PID") if "PID" in header else 1
    print(lines[0])
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col].isdigit() and int(fields[col]) in pids:
            print(line)
    return 0


def _cmd_list(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .oci.state import list_states

    states = [s.oci() for s in list_states(ns.root)]
    if ns.quiet:
        for s in states:
            print(s["id"])
    elif ns.format == "json":
        print(json.dumps(states))
    else:
        rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
        rows += [(s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"],
                  s["owner"]) for s in states]
        widths = [max(len(r[i]) for r in rows) for i in range(6)]
        for r in rows:
            print("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _cmd_events(ns: argparse.Namespace, cfg: Config) -> int:
    import json
    import time

    from .oci import lifecycle
    from .oci.errors import OciError

    while True:
        try:
            data = lifecycle.stats(ns.root, ns.id)
        except OciError:
            if ns.stats:
                raise
            return 0        # the container is gone: the event stream ends
        print(json.dumps({"type": "stats", "id": ns.id, "data": data}), flush=True)
        if ns.stats:
            return 0
        time.sleep(_duration(ns.interval))


def _duration(text: str) -> float:
    """Go durations as runc takes them: "5s", "500ms", "1m"."""
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    for u in ("ms", "s", "m", "h"):
        if text.endswith(u) and text[:-len(u)].replace(".", "", 1).isdigit():
            return float(text[:-len(u)]) * units[u]
    try:
        return float(text)
    except ValueError:
        raise UsageError(f"--interval {text!r}: expected a duration like 5s") from None


def _cmd_update(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .oci import lifecycle

    resources: dict[str, Any] = {}
    if ns.resources:
        try:
            text = (sys.stdin.read() if ns.resources == "-"
                    else Path(ns.resources).read_text(encoding="utf-8"))
            resources = json.loads(text)
        except (OSError, ValueError) as e:
            raise UsageError(f"--resources {ns.resources}: {e}") from e
    if ns.memory is not None:
        resources.setdefault("memory", {})["limit"] = ns.memory
    if ns.pids_limit is not None:
        resources.setdefault("pids", {})["limit"] = ns.pids_limit
    lifecycle.update(ns.root, ns.id, resources)
    return 0


def _parse_mount(text: str) -> dict[str, Any]:
    """`type:dest[:src]` to a config.json mount; a bind mount needs a source."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1].startswith("/"):
        raise UsageError(f"--mount {text!r}: expected TYPE:/DEST[:SOURCE]")
    typ, dest, src = parts[0], parts[1], parts[2] if len(parts) == 3 else parts[0]
    if typ == "bind":
        if len(parts) != 3:
            raise UsageError(f"--mount {text!r}: a bind mount needs a source")
        return {"destination": dest, "type": "bind", "source": os.path.abspath(src),
                "options": ["rbind", "rw"]}
    return {"destination": dest, "type": typ, "source": src}


def _cmd_do(ns: argparse.Namespace, cfg: Config) -> int:
    from .oci.defaults import DEFAULT_PATH, base_mounts, default_spec
    from .oci.spec import parse_config

    if not ns.command:
        raise UsageError("do: no command given (quark do ROOTFS -- CMD ARGS)")
    for e in ns.env:
        if "=" not in e or e.startswith("="):
            raise UsageError(f"--env {e!r}: expected KEY=VALUE")
    # Later --env values replace earlier ones and the defaults, keeping their place.
    env = {e.split("=", 1)[0]: e for e in [DEFAULT_PATH, "TERM=xterm", *ns.env]}
    config = default_spec(ns.command, terminal=False)
    config["root"] = {"path": os.path.abspath(ns.rootfs), "readonly": False}
    config["hostname"] = ns.hostname
    proc = config["process"]
    proc["env"] = list(env.values())
    proc["cwd"] = ns.cwd
    # No /sys, no cgroup: `do` is for running a program, not a full container.
    config["mounts"] = base_mounts() + [_parse_mount(m) for m in ns.mount]
    # Host namespaces are not needed: the guest's kernel is its own.
    config["linux"] = {}
    spec = parse_config(config, bundle=None, container_id=ns.id or f"do-{os.getpid()}")
    return _run_sandbox(spec, cfg, None)


def _cmd_spec(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .oci.defaults import default_spec
    from .oci.errors import OciError

    bundle = Path(os.path.abspath(ns.bundle or os.getcwd()))
    path = bundle / "config.json"
    if not bundle.is_dir():
        raise OciError(f"bundle directory {bundle} does not exist")
    if path.exists():
        raise OciError(f"{path} already exists; remove it first")
    text = json.dumps(default_spec(rootless=ns.rootless), indent="\t")
    path.write_text(text, encoding="utf-8")
    return 0


def _cmd_features(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .oci.features import features

    print(json.dumps(features(), indent=4))
    return 0


def _cmd_bundle(ns: argparse.Namespace, cfg: Config) -> int:
    from .tools.bundle import make_busybox_bundle

    make_busybox_bundle(Path(ns.dir), args=ns.command or None,
                        extra_binaries=[Path(p) for p in ns.add])
    print(ns.dir)
    return 0


def _cmd_plugins(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .plugins.manager import make_manager

    pm = make_manager(cfg)
    pm.statuses()
    if ns.format == "json":
        print(json.dumps([vars(i) | {"hooks": list(i.hooks)} for i in pm.infos], indent=2))
        return 0
    if not pm.infos:
        print("no plugins loaded")
    for i in pm.infos:
        origin = "built-in" if i.builtin else f"{i.distribution or '?'} {i.version or '?'}"
        print(f"{i.name}  ({origin})  {i.module}")
        if i.error:
            print(f"    not loaded: {i.error}")
        if i.hooks:
            print(f"    hooks: {', '.join(i.hooks)}")
        if i.status:
            print(f"    status: {i.status}")
    return 0


def _cmd_template(ns: argparse.Namespace, cfg: Config) -> int:
    import json

    from .template import client

    path = ns.socket or client.socket_path() or client.DEFAULT_SOCKET
    if ns.action == "status":
        from .template.server import status

        try:
            print(json.dumps(status(path), indent=2))
        except OSError as e:
            raise UsageError(f"template on {path}: {e.strerror or e}") from e
        return 0
    from .log import setup_logging
    from .template.server import serve

    setup_logging(cfg.log)
    return serve(path)


# -- parsers ---------------------------------------------------------------------------

def _id(p: argparse.ArgumentParser) -> None:
    p.add_argument("id", metavar="ID", help="the container id")


def _create_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bundle", "-b", metavar="DIR",
                   help="the bundle directory (default: the current directory)")
    p.add_argument("--pid-file", metavar="FILE", help="write the sandbox process id here")
    p.add_argument("--console-socket", metavar="PATH",
                   help="AF_UNIX socket receiving the pty master (terminal: true)")
    for flag in ("--no-pivot", "--no-new-keyring"):
        p.add_argument(flag, action="store_true", help="accepted for runc compatibility")
    p.add_argument("--preserve-fds", type=int, default=0, metavar="N",
                   help="keep N extra file descriptors (after stdio) open")
    _id(p)


def _p_run(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("run", help="create and run a container in the foreground")
    p.add_argument("--detach", "-d", action="store_true", help="detach from the container")
    p.add_argument("--keep", action="store_true", help="keep the state after it exits")
    p.add_argument("--no-subreaper", action="store_true", help="accepted for compatibility")
    _create_flags(p)
    return p


def _p_create(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("create", help="create a container (its process waits for start)")
    _create_flags(p)
    return p


def _p_id_only(name: str, text: str) -> Callable[[SubParsers], argparse.ArgumentParser]:
    def build(sub: SubParsers) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text)
        _id(p)
        return p
    return build


def _p_kill(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("kill", help="send a signal to the container's init (default TERM)")
    p.add_argument("--all", "-a", action="store_true", help="to every process")
    _id(p)
    p.add_argument("signal", nargs="?", default="SIGTERM", metavar="SIGNAL")
    return p


def _p_delete(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("delete", help="delete a stopped container (--force: any)")
    p.add_argument("--force", "-f", action="store_true", help="kill it first if needed")
    _id(p)
    return p


def _p_exec(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("exec", help="run a process in a running container",
                       usage="quark exec [options] ID [--] CMD [ARG ...]")
    p.add_argument("--process", "-p", metavar="FILE", help="process.json to run")
    p.add_argument("--detach", "-d", action="store_true", help="do not wait for it")
    p.add_argument("--tty", "-t", action="store_true", help="give it a terminal")
    p.add_argument("--pid-file", metavar="FILE", help="write the holder process id here")
    p.add_argument("--console-socket", metavar="PATH", help="receives the pty master")
    p.add_argument("--cwd", metavar="DIR", help="working directory")
    p.add_argument("--env", "-e", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--user", "-u", metavar="UID[:GID]")
    p.add_argument("--additional-gids", "-g", action="append", type=int, default=[])
    for flag in ("--no-new-privs", "--ignore-paused"):
        p.add_argument(flag, action="store_true", help="accepted for compatibility")
    for flag in ("--cap", "-c", "--apparmor", "--process-label", "--cgroup"):
        p.add_argument(flag, action="append", default=[], help="accepted for compatibility")
    p.add_argument("--preserve-fds", type=int, default=0, help="accepted for compatibility")
    _id(p)
    return p


def _p_ps(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("ps", help="host processes of the container (its sandbox process)")
    p.add_argument("--format", "-f", choices=["table", "json"], default="table")
    _id(p)       # then ps(1) options, e.g. `quark ps ID -o pid,rss` (default -ef)
    return p


def _p_list(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("list", help="list the containers")
    p.add_argument("--format", "-f", choices=["table", "json"], default="table")
    p.add_argument("--quiet", "-q", action="store_true", help="ids only")
    return p


def _p_events(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("events", help="stats of a container as JSON lines")
    p.add_argument("--stats", action="store_true", help="print the stats once and exit")
    p.add_argument("--interval", default="5s", help="time between stats (default 5s)")
    _id(p)
    return p


def _p_update(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("update", help="change a container's resources")
    p.add_argument("--resources", "-r", metavar="FILE",
                   help="linux.resources JSON ('-' for stdin)")
    p.add_argument("--memory", type=int, help="memory limit in bytes")
    p.add_argument("--pids-limit", type=int, help="maximum number of processes")
    _id(p)
    return p


def _p_do(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("do", help="run a command in a root directory, no bundle needed",
                       usage="quark do [options] ROOTFS [--] CMD [ARG ...]")
    p.add_argument("--env", "-e", action="append", default=[], metavar="KEY=VALUE",
                   help="set an environment variable (repeatable)")
    p.add_argument("--cwd", default="/", metavar="DIR", help="working directory (default /)")
    p.add_argument("--mount", "-m", action="append", default=[], metavar="TYPE:DEST[:SRC]",
                   help="add a mount, e.g. tmpfs:/tmp or bind:/data:/host/dir (repeatable)")
    p.add_argument("--hostname", default="quark", help="the container's hostname")
    p.add_argument("--id", help="container id (default: do-<pid>)")
    p.add_argument("rootfs", metavar="ROOTFS", help="the container's root directory")
    return p


def _p_spec(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("spec", help="write a default config.json in the bundle directory")
    p.add_argument("--bundle", "-b", metavar="DIR", help="where (default: current directory)")
    p.add_argument("--rootless", action="store_true", help="a spec for a rootless container")
    return p


def _p_features(sub: SubParsers) -> argparse.ArgumentParser:
    return sub.add_parser("features", help="print what this runtime supports (JSON)")


def _p_bundle(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("bundle", help="build a test bundle",
                       usage="quark bundle busybox [--add BINARY] DIR [--] [CMD ARG ...]")
    p.add_argument("kind", choices=["busybox"], help="what to put in the rootfs")
    p.add_argument("--add", action="append", default=[], metavar="BINARY",
                   help="also copy this static binary into /bin (repeatable)")
    p.add_argument("dir", metavar="DIR", help="the bundle directory to create")
    return p


def _p_plugins(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("plugins", help="list the loaded plugins ($QUARK_PLUGINS restricts)")
    p.add_argument("--format", "-f", choices=["table", "json"], default="table")
    return p


def _p_template(sub: SubParsers) -> argparse.ArgumentParser:
    p = sub.add_parser("template", help="a warm process that forks foreground runs "
                                        "(see docs/template.md)")
    p.add_argument("action", choices=["serve", "status"],
                   help="serve: run the template (until SIGTERM); status: ask it")
    p.add_argument("--socket", metavar="PATH",
                   help="its socket (default $QUARK_TEMPLATE or /run/quark/template.sock)")
    return p


# name: (parser builder, handler, number of positionals before a trailing command line)
COMMANDS: dict[str, tuple[Callable[[SubParsers], argparse.ArgumentParser],
                          Callable[[argparse.Namespace, Config], int], int | None]] = {
    "run": (_p_run, _cmd_run, None),
    "create": (_p_create, _cmd_create, None),
    "start": (_p_id_only("start", "start a created container"), _cmd_start, None),
    "state": (_p_id_only("state", "print a container's state (JSON)"), _cmd_state, None),
    "kill": (_p_kill, _cmd_kill, None),
    "delete": (_p_delete, _cmd_delete, None),
    "exec": (_p_exec, _cmd_exec, 1),
    "ps": (_p_ps, _cmd_ps, 1),
    "list": (_p_list, _cmd_list, None),
    "pause": (_p_id_only("pause", "freeze every vCPU of a container"), _cmd_pause, None),
    "resume": (_p_id_only("resume", "thaw a paused container"), _cmd_pause, None),
    "events": (_p_events, _cmd_events, None),
    "update": (_p_update, _cmd_update, None),
    "do": (_p_do, _cmd_do, 1),
    "spec": (_p_spec, _cmd_spec, None),
    "features": (_p_features, _cmd_features, None),
    "bundle": (_p_bundle, _cmd_bundle, 2),
    "plugins": (_p_plugins, _cmd_plugins, None),
    "template": (_p_template, _cmd_template, None),
}


def build_parser(only: str | None = None
                 ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The parser, with the subparser of command `only` alone if it is one (building
    all nineteen costs ~5 ms of every start), else all of them (for --help, errors).
    Kept per process: a template builds `run`'s once for all its runs."""
    return _build_parser(only if only in COMMANDS else None)


@functools.cache
def _build_parser(only: str | None
                  ) -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="quark",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # keeps --version's lines
        description="Quark: an OCI runtime running each container in a KVM guest "
                    "served by an application kernel written in Python.",
    )
    parser.add_argument("--root", default=DEFAULT_ROOT, metavar="DIR",
                        help=f"state directory (default {DEFAULT_ROOT})")
    parser.add_argument("--log", metavar="FILE", help="log file (default: from config.toml)")
    parser.add_argument("--log-format", choices=["text", "json"], help="log format")
    parser.add_argument("--debug", action="store_true",
                        help="debug logging, and tracebacks on errors")
    parser.add_argument("--strace", action="store_true",
                        help="print the container's system calls on stderr (decoded)")
    parser.add_argument("--systemd-cgroup", action="store_true",
                        help="accepted for compatibility (cgroupfs is used)")
    parser.add_argument("--version", "-v", action="version",
                        version=f"quark version {__version__}\nspec: {SPEC_VERSION}\n"
                                f"python: {sys.version.split()[0]}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND")
    names = [only] if only in COMMANDS else list(COMMANDS)
    subparsers = {name: COMMANDS[name][0](sub) for name in names}
    return parser, subparsers


def _takes_value(parser: argparse.ArgumentParser) -> set[str]:
    return {o for a in parser._actions if a.nargs != 0 for o in a.option_strings}


def _split_tail(args: list[str], parser: argparse.ArgumentParser,
                npos: int, immediate: bool = False) -> tuple[list[str], list[str]]:
    """Split `args` where the trailing command line starts: at the first `--`, or at the
    first non-option word after `npos` positionals (runc's and runsc's rule), so that
    `quark do /r sh -c x` keeps `-c` for sh. With `immediate`, the tail is everything
    after the `npos` positionals, options too (`quark ps ID -o pid`)."""
    valued = _takes_value(parser)
    i, seen = 0, 0
    while i < len(args):
        if immediate and seen == npos:
            return args[:i], args[i:]
        a = args[i]
        if a == "--":
            return args[:i], args[i + 1:]
        if a.startswith("-") and a != "-":
            i += 2 if a in valued else 1
            continue
        if seen == npos:
            return args[:i], args[i:]
        seen += 1
        i += 1
    return args, []


def _parse(argv: list[str]) -> argparse.Namespace:
    # Find the command word, skipping the global options and their values.
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        i += 2 if argv[i] in GLOBAL_VALUED else 1
    name = argv[i] if i < len(argv) else None
    parser, subparsers = build_parser(None if "-h" in argv[:i] or "--help" in argv[:i]
                                      else name)
    if name in COMMANDS and COMMANDS[name][2] is not None:
        head, tail = _split_tail(argv[i + 1:], subparsers[name], COMMANDS[name][2] or 0,
                                 immediate=name == "ps")
        ns = parser.parse_args(argv[:i + 1] + head)
        ns.command = tail
        return ns
    ns = parser.parse_args(argv)
    if ns.command_name is None:
        parser.print_usage(sys.stderr)
        parser.exit(2, "quark: error: a command is required\n")
    return ns


def _message(e: BaseException) -> str:
    """One line for the user: our own errors speak for themselves."""
    text = " ".join(str(e).split()) or type(e).__name__
    if type(e).__module__.startswith("quark.") or isinstance(e, (UsageError, OSError)):
        return text
    return f"internal error: {type(e).__name__}: {text} (--debug shows the traceback)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `quark` console script; returns the exit status."""
    from .log import phase

    argv = list(sys.argv[1:] if argv is None else argv)
    ns = _parse(argv)
    phase("parse")
    cfg = None
    try:
        from .config import load_config

        cfg = load_config().with_overrides(log_path=ns.log, log_format=ns.log_format,
                                           debug=ns.debug)
        phase("config")
        if ns.strace:
            from dataclasses import replace

            cfg = replace(cfg, kernel=replace(cfg.kernel, strace=True))
        return COMMANDS[ns.command_name][1](ns, cfg)
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if ns.debug:
            import traceback

            traceback.print_exc()
        msg = _message(e)
        print(f"quark: {msg}", file=sys.stderr, flush=True)
        from .log import write_error

        if cfg is not None:
            write_error(cfg.log.path, cfg.log.format, msg)
        else:
            write_error(ns.log, ns.log_format or "text", msg)
        return EXIT_FAILURE


def entry() -> None:
    """The console script and ``python -m quark.cli``: main(), then exit.

    After a foreground sandbox, this process holds a VM, guest memory, threads and
    hundreds of modules; interpreter finalization would tear them down one by one
    for nothing. Everything that outlives the process (state directory, cgroups,
    network leases and links) was released before main() returned, and the kernel
    frees the rest, so flush what we wrote and leave at once."""
    status = main()
    # A profiler or coverage tracer writes its results at a normal exit.
    if not _sandbox_ran or sys.getprofile() is not None or sys.gettrace() is not None:
        sys.exit(status)
    for f in (sys.stdout, sys.stderr):
        try:
            f.flush()
        except (OSError, ValueError):
            pass
    from .log import flush

    flush()
    os._exit(status)


if __name__ == "__main__":
    entry()
