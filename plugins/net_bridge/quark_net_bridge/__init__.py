"""quark-net-bridge: sandbox networking on a Linux bridge (see README.md)."""

__version__ = "0.1.0"
