"""The plugin manager: built-in plugins plus every distribution in the ``quark``
entry-point group.

Which third-party plugins load: all of them, unless ``$QUARK_PLUGINS`` names some
(comma-separated entry-point names, e.g. ``net_bridge,myplugin``); ``none`` loads no
third-party plugin. Built-in plugins are not affected: the strace printer registers
when ``--strace`` / ``[kernel] strace = true`` asks for it.

A plugin that fails to import is skipped with a warning (it is listed by
``quark plugins`` with the error): a broken third-party package must not stop every
container on the host.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import pluggy

from . import entry_points, hookspecs

log = logging.getLogger("quark.plugins")


hookimpl = pluggy.HookimplMarker("quark")


@dataclasses.dataclass
class PluginInfo:
    """What ``quark plugins`` shows about one plugin."""

    name: str
    module: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    error: str | None = None
    hooks: tuple[str, ...] = ()
    status: str | None = None


class SyscallObserver:
    """What the kernel calls around each system call when some plugin observes them
    (``Kernel.syscall_observer``); absent otherwise, so unobserved calls cost one
    attribute test."""

    __slots__ = ("enter", "exit")

    def __init__(self, hook: Any) -> None:
        enter, exit_ = hook.quark_syscall_enter, hook.quark_syscall_exit

        # A failing observer must not kill the guest task whose call it watched.
        def on_enter(t: Any, nr: int, a: Any) -> None:
            try:
                enter(task=t, nr=nr, args=a)
            except Exception:  # noqa: BLE001
                log.exception("quark_syscall_enter failed")

        def on_exit(t: Any, nr: int, a: Any, r: int) -> None:
            try:
                exit_(task=t, nr=nr, args=a, result=r)
            except Exception:  # noqa: BLE001
                log.exception("quark_syscall_exit failed")

        self.enter = on_enter if enter.get_hookimpls() else None
        self.exit = on_exit if exit_.get_hookimpls() else None


class QuarkPluginManager(pluggy.PluginManager):
    def __init__(self) -> None:
        super().__init__("quark")
        self.add_hookspecs(hookspecs)
        self.infos: list[PluginInfo] = []
        self.config: Any = None

    def plugin_config(self, name: str) -> dict[str, Any]:
        """The ``[name]`` table of config.toml for plugin ``name`` (empty if none)."""
        return plugin_config(name, self.config)

    def syscall_observer(self) -> SyscallObserver | None:
        """An observer for ``Kernel.syscall_observer``, or None when no loaded
        plugin implements ``quark_syscall_enter`` or ``quark_syscall_exit``."""
        obs = SyscallObserver(self.hook)
        return obs if obs.enter is not None or obs.exit is not None else None

    def network_setup(self, spec: Any, netns_path: str, sandbox_id: str,
                      skip: str | None = None) -> list[dict[str, Any]]:
        """Every plugin's quark_network_setup but ``skip``'s (the plugin that adopted
        the namespace)."""
        hook = self.hook.quark_network_setup
        if skip is not None and self.get_plugin(skip) is not None:
            hook = self.subset_hook_caller("quark_network_setup", [self.get_plugin(skip)])
        results = hook(spec=spec, netns_path=netns_path, sandbox_id=sandbox_id)
        return [r for r in results if r]

    def network_adopt(self, spec: Any, sandbox_id: str) -> tuple[str, int, Any] | None:
        """(plugin name, namespace fd, result) from the first plugin whose
        quark_network_adopt hands over a namespace it wired ahead; None if none."""
        for impl in reversed(self.hook.quark_network_adopt.get_hookimpls()):
            got: Any = impl.function(
                **{a: v for a, v in (("spec", spec), ("sandbox_id", sandbox_id))
                   if a in impl.argnames})
            if got is not None:
                fd, result = got
                return str(impl.plugin_name), fd, result
        return None

    def network_prepare(self) -> None:
        """quark_network_prepare of every plugin (a template's worker); failures are
        logged: the run then sets up its network itself."""
        for impl in reversed(self.hook.quark_network_prepare.get_hookimpls()):
            try:
                impl.function()
            except Exception as e:  # noqa: BLE001 - the run does it the usual way
                log.warning("plugin %s: quark_network_prepare failed: %s", impl.plugin_name, e)

    def network_teardown(self, spec: Any, netns_path: str | None, sandbox_id: str) -> None:
        """Every implementation runs even if one fails; failures are logged."""
        for impl in reversed(self.hook.quark_network_teardown.get_hookimpls()):
            try:
                impl.function(**{a: v for a, v in (("spec", spec), ("netns_path", netns_path),
                                                    ("sandbox_id", sandbox_id))
                                 if a in impl.argnames})
            except Exception as e:  # noqa: BLE001 - delete must finish
                log.warning("network teardown of %s by plugin %s failed: %s",
                            sandbox_id, impl.plugin_name, e)

    def notify(self, hook_name: str, **kwargs: Any) -> None:
        """Call an observation hook; an exception is logged, not raised."""
        for impl in reversed(getattr(self.hook, hook_name).get_hookimpls()):
            try:
                impl.function(**{a: kwargs[a] for a in impl.argnames})
            except Exception:  # noqa: BLE001
                log.exception("plugin %s: %s failed", impl.plugin_name, hook_name)

    def statuses(self) -> None:
        """Fill ``PluginInfo.status`` from each plugin's quark_plugin_status."""
        by_name = {i.name: i for i in self.infos}
        for impl in self.hook.quark_plugin_status.get_hookimpls():
            info = by_name.get(impl.plugin_name)
            if info is None:
                continue
            try:
                info.status = impl.function()
            except Exception as e:  # noqa: BLE001
                info.status = f"status failed: {e}"


def plugin_config(name: str, config: Any = None) -> dict[str, Any]:
    """The ``[name]`` table of config.toml (a plugin's own section; empty if none).
    ``config`` None reads the file; an unreadable file gives an empty table."""
    if config is None:
        from quark.config import ConfigError, load_config
        try:
            config = load_config()
        except ConfigError as e:
            log.warning("plugin %s: %s", name, e)
            return {}
    tables = getattr(config, "plugins", None) or {}
    return dict(tables.get(name, {}))


def _register_builtins(pm: QuarkPluginManager, config: Any) -> None:
    kcfg = getattr(config, "kernel", None)
    if getattr(kcfg, "strace", False):
        from .builtin import strace
        pm.register(strace.StracePlugin(), name="strace")
        from quark import __version__
        pm.infos.append(PluginInfo("strace", strace.__name__, "quark-runtime", __version__,
                                   builtin=True))


# Set by preload() in a template process: its runs reuse it instead of checking the
# cache (quark.plugins.entry_points) again.
_entry_points: list[entry_points.Entry] | None = None


def _scan() -> list[entry_points.Entry]:
    """The ``quark`` group's entry points."""
    return _entry_points if _entry_points is not None else entry_points.entries()


def preload(config: Any = None, where: str = "template") -> None:
    """In a template process (quark.template), or its workers' parent (``where``
    "worker"): scan the entry points, import every plugin, and let each import what
    its code there will (quark_preload)."""
    global _entry_points
    _entry_points = entry_points.entries()
    pm = make_manager(config)
    for impl in reversed(pm.hook.quark_preload.get_hookimpls()):
        try:
            impl.function(**({"where": where} if "where" in impl.argnames else {}))
        except Exception as e:  # noqa: BLE001 - a run imports it again, or fails alone
            log.warning("plugin %s: quark_preload failed: %s", impl.plugin_name, e)


def _register_entry_points(pm: QuarkPluginManager) -> None:
    wanted = entry_points.wanted()
    for ep in _scan():
        if wanted is not None and ep.name not in wanted:
            continue
        if pm.has_plugin(ep.name):
            continue            # the same distribution seen twice on sys.path
        info = PluginInfo(ep.name, ep.value, ep.dist, ep.version)
        pm.infos.append(info)
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as e:  # noqa: BLE001 - a broken plugin must not stop quark
            info.error = f"{type(e).__name__}: {e}"
            log.warning("plugin %s (%s) not loaded: %s", ep.name, ep.value, info.error)


def make_manager(config: Any = None) -> QuarkPluginManager:
    """A manager with the built-in plugins ``config`` enables and the third-party
    plugins ``$QUARK_PLUGINS`` allows. ``config`` is a ``quark.config.Config``; None
    reads the configuration file."""
    if config is None:
        from quark.config import ConfigError, load_config
        try:
            config = load_config()
        except ConfigError as e:
            log.warning("plugins: %s; using defaults", e)
    pm = QuarkPluginManager()
    pm.config = config
    _register_builtins(pm, config)
    _register_entry_points(pm)
    for info in pm.infos:
        plugin = pm.get_plugin(info.name)
        if plugin is not None:
            info.hooks = tuple(sorted(c.name for c in pm.get_hookcallers(plugin) or ()))
    return pm
