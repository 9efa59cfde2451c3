"""Host-wide settings: /etc/quark/config.toml (or the file named by $QUARK_CONFIG).

Every key is optional; a missing file means all defaults. docs/config.md describes
the same keys for users — keep the two in step (a unit test compares them).

```toml
[kernel]
memory_mib = 1024        # guest memory per sandbox, MiB
vcpus = 1                # vCPUs per sandbox
strace = false           # log every system call (name, arguments, result)
syscall_path = "qcall"   # "qcall" (doorbell + poller, no exit) or "exit" (out 0x80)
qcall_spin = 8000        # pause iterations the gate spins before taking the exit path
io_uring = "off"         # "auto": blocking stream I/O waits through io_uring if the host has it
write_behind = "rootfs"  # "off": every write(2) reaches the host file before it returns
gate_calls = "on"        # "off": the gate answers no call by itself (reads of /dev/zero, ring writes)

[log]
path = "/var/log/quark/quark.log"   # "" for no log file; --log overrides
format = "text"          # "text" or "json"; --log-format overrides
level = "info"           # "debug", "info", "warning", "error"; --debug gives "debug"

[platform]
kind = "auto"            # "auto" (probe), "pvm" or "vmx" (hardware virtualization)
```

Command-line flags win over the file; the file wins over the defaults.

A plugin may have its own section, named like its entry point in the `quark` group
(e.g. `[net_bridge]`): such a section is accepted only when a distribution provides
that entry point, and is handed to the plugin as it is (it checks its own keys).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

DEFAULT_PATH = Path("/etc/quark/config.toml")
ENV_VAR = "QUARK_CONFIG"

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
PLATFORM_KINDS = ("auto", "pvm", "vmx")


class ConfigError(Exception):
    """The configuration file is unreadable or holds a bad value (one line)."""


@dataclass(frozen=True)
class KernelConfig:
    memory_mib: int = 1024
    vcpus: int = 1
    strace: bool = False
    syscall_path: str = "qcall"
    qcall_spin: int = 8000
    io_uring: str = "off"
    write_behind: str = "rootfs"
    gate_calls: str = "on"


@dataclass(frozen=True)
class LogConfig:
    path: str = "/var/log/quark/quark.log"
    format: str = "text"
    level: str = "info"


@dataclass(frozen=True)
class PlatformConfig:
    kind: str = "auto"


@dataclass(frozen=True)
class Config:
    """The whole configuration. `source` is the file read, or None for defaults."""

    kernel: KernelConfig = field(default_factory=KernelConfig)
    log: LogConfig = field(default_factory=LogConfig)
    platform: PlatformConfig = field(default_factory=PlatformConfig)
    source: Path | None = None
    plugins: dict[str, dict[str, Any]] = field(default_factory=dict, hash=False)

    def with_overrides(self, *, log_path: str | None = None, log_format: str | None = None,
                       debug: bool = False) -> Config:
        """This configuration with the global command-line flags applied."""
        log = self.log
        if log_path is not None:
            log = replace(log, path=log_path)
        if log_format is not None:
            log = replace(log, format=_choice("--log-format", log_format, LOG_FORMATS))
        if debug:
            log = replace(log, level="debug")
        return replace(self, log=log)


_SECTIONS = {"kernel": KernelConfig, "log": LogConfig, "platform": PlatformConfig}
_CHOICES = {("log", "format"): LOG_FORMATS, ("log", "level"): LOG_LEVELS,
            ("platform", "kind"): PLATFORM_KINDS,
            ("kernel", "syscall_path"): ("qcall", "exit"),
            ("kernel", "io_uring"): ("auto", "off"),
            ("kernel", "write_behind"): ("rootfs", "off"),
            ("kernel", "gate_calls"): ("on", "off")}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


def _section(path: Path, name: str, cls: type, data: Any) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [{name}] must be a table")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: unknown key {name}.{key}")
        default: Any = known[key].default
        if type(value) is not type(default):
            raise ConfigError(f"{path}: {name}.{key} must be {type(default).__name__}, "
                              f"not {type(value).__name__}")
        if (name, key) in _CHOICES:
            _choice(f"{path}: {name}.{key}", value, _CHOICES[(name, key)])
        if isinstance(value, int) and not isinstance(value, bool) and value <= 0:
            raise ConfigError(f"{path}: {name}.{key} must be positive, not {value}")
        values[key] = value
    return cls(**values)


def config_path() -> Path:
    """The file to read: $QUARK_CONFIG if set, else /etc/quark/config.toml."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_PATH)


def load_config(path: Path | None = None) -> Config:
    """Read the configuration. A missing default file gives the defaults; a file named
    explicitly (argument or $QUARK_CONFIG) must exist."""
    explicit = path is not None or bool(os.environ.get(ENV_VAR))
    path = path or config_path()
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"config file {path} does not exist") from None
        return Config()
    except OSError as e:
        raise ConfigError(f"reading {path}: {e.strerror}") from e

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib  # type: ignore[import-not-found, no-redef, unused-ignore]
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: {e}") from None

    sections: dict[str, Any] = {}
    plugins: dict[str, dict[str, Any]] = {}
    for name, data in doc.items():
        if name not in _SECTIONS:
            if not isinstance(data, dict) or name not in _plugin_names():
                raise ConfigError(f"{path}: unknown section [{name}]")
            plugins[name] = data
            continue
        sections[name] = _section(path, name, _SECTIONS[name], data)
    return Config(source=path, plugins=plugins, **sections)


def _plugin_names() -> set[str]:
    """Entry-point names of the `quark` group: the plugins' own sections."""
    from quark.plugins.entry_points import entries
    return {e.name for e in entries()}
