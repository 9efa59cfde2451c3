"""Plugins that ship with quark and register like third-party ones (see manager.py)."""
