"""Helpers shared by the client tests: run a client, wait, start and stop a daemon."""

from __future__ import annotations

import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

BUSYBOX_REF = "docker.io/library/quark-busybox:latest"   # in containerd and docker
PAUSE_REF = "localhost/quark-pause:1"                     # the CRI sandbox image


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


def link_names(ip_o_link: str) -> list[str]:
    """The interface names in the output of `ip -o link show`."""
    return [line.split(":")[1].strip() for line in ip_o_link.splitlines()]


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


# -- images --------------------------------------------------------------------------------

def oci_archive(rootfs_tar: Path, out: Path, name: str, cmd: list[str]) -> Path:
    """Write an OCI image-layout tarball (what `ctr images import` reads) holding one
    uncompressed layer, `rootfs_tar`, with `cmd` as its command and `name` as its
    reference (the io.containerd.image.name annotation)."""
    import hashlib
    import io
    import json
    import tarfile

    blobs: dict[str, bytes] = {}

    def blob(data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        blobs[digest] = data
        return {"digest": digest, "size": len(data)}

    layer = rootfs_tar.read_bytes()
    layer_desc = blob(layer)
    config = {
        "architecture": "amd64", "os": "linux",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                   "Cmd": cmd, "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created_by": "quark tests"}],
    }
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   **blob(json.dumps(config).encode())},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    index = {
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       **blob(json.dumps(manifest).encode()),
                       "annotations": {"io.containerd.image.name": name,
                                       "org.opencontainers.image.ref.name": name}}],
    }

    def add(t: tarfile.TarFile, path: str, data: bytes) -> None:
        info = tarfile.TarInfo(path)
        info.size = len(data)
        info.mode = 0o644
        t.addfile(info, io.BytesIO(data))

    with tarfile.open(out, "w") as t:
        add(t, "oci-layout", b'{"imageLayoutVersion": "1.0.0"}')
        add(t, "index.json", json.dumps(index).encode())
        for digest, data in blobs.items():
            add(t, "blobs/sha256/" + digest.split(":", 1)[1], data)
    return out
