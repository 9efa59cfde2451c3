"""Every hook is specified, named quark_*, typed and documented (datasette's
test_plugin_hooks_are_documented)."""

from __future__ import annotations

import inspect

import pytest

from quark.plugins import hookspecs


def _hooks() -> list[tuple[str, object]]:
    return [(n, f) for n, f in vars(hookspecs).items()
            if callable(f) and hasattr(f, "quark_spec")]


def test_there_are_hooks() -> None:
    names = {n for n, _ in _hooks()}
    assert {"quark_network_setup", "quark_network_teardown", "quark_storage_mount",
            "quark_sandbox_created", "quark_sandbox_started", "quark_sandbox_stopped",
            "quark_syscall_enter", "quark_syscall_exit"} <= names


@pytest.mark.parametrize("name,fn", _hooks(), ids=lambda v: v if isinstance(v, str) else "")
def test_hook_is_documented(name: str, fn: object) -> None:
    assert name.startswith("quark_")
    doc = inspect.getdoc(fn) or ""
    assert doc, f"{name} has no docstring"
    sig = inspect.signature(fn)  # type: ignore[arg-type]
    for p in sig.parameters.values():
        assert p.annotation is not inspect.Parameter.empty, f"{name}({p.name}) untyped"
        assert f":param {p.name}:" in doc, f"{name}: :param {p.name}: missing"
    assert sig.return_annotation is not inspect.Signature.empty, f"{name}: no return type"
    assert ":returns:" in doc, f"{name}: :returns: missing"
    if getattr(fn, "quark_spec").get("firstresult"):
        assert "firstresult" in doc, f"{name} is firstresult but does not say so"


def test_no_undeclared_hooks_in_manager() -> None:
    from quark.plugins.manager import QuarkPluginManager
    pm = QuarkPluginManager()
    declared = {n for n, _ in _hooks()}
    assert {n for n in vars(pm.hook) if n.startswith("quark_")} == declared
