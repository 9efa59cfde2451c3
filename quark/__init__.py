"""Quark: a secure container runtime whose containers run in KVM guests served by a
Linux application kernel written in Python."""

__version__ = "0.1.0"
