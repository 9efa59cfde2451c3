"""Quark's plugin system (pluggy): hook specifications and the plugin manager.

``hookspecs.py`` is the contract; ``manager.py`` loads the built-in plugins and the
distributions of the ``quark`` entry-point group. A plugin marks its functions with
``hookimpl``::

    from quark.plugins import hookimpl

    @hookimpl
    def quark_sandbox_started(sandbox):
        ...
"""

from .manager import hookimpl, make_manager

__all__ = ["hookimpl", "make_manager"]
