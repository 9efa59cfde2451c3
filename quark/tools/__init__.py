"""Helpers for users, tests and benchmarks that are not part of the runtime itself."""
