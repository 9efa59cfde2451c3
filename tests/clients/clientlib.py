"""Helpers shared by the client tests: run a client, wait, start and stop a daemon."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest


# -- running clients ----------------------------------------------------------------------

class Cmd:
    """A command-line client with fixed leading arguments and environment."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = {**os.environ, **(env or {})}

    def __call__(self, *args: str, timeout: float = 60, input: str | None = None,
                 check: bool = False, stdin: Any = None) -> subprocess.CompletedProcess[str]:
        full = [*self.argv, *args]
        try:
            p = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                               input=input, env=self.env,
                               stdin=stdin if input is None else None)
        except subprocess.TimeoutExpired as e:
            pytest.fail(f"{shlex.join(full)} timed out after {timeout}s; "
                        f"stdout={e.stdout!r} stderr={e.stderr!r}")
        if check and p.returncode != 0:
            pytest.fail(f"{shlex.join(full)} exited {p.returncode}\n"
                        f"stdout: {p.stdout}\nstderr: {p.stderr}")
        return p


def wait_for(pred: Any, timeout: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def start_daemon(argv: list[str], log: Path, ready: Any, timeout: float = 30,
                 env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a daemon with its output in `log`; wait until ready() is true."""
    out = open(log, "ab")
    p = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})},
                         start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if p.poll() is not None:
            pytest.fail(f"{argv[0]} exited {p.returncode} at start:\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        if ready():
            return p
        time.sleep(0.2)
    stop_daemon(p)
    pytest.fail(f"{argv[0]} not ready after {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")


def stop_daemon(p: subprocess.Popen[bytes]) -> None:
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
