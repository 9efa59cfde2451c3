#!/usr/bin/env bash
# Install everything Quark, its tests and its benchmarks need on Debian 12, as root.
# Idempotent: installs only missing packages, then (re)installs quark itself with
# `pip install '.[test]'` (not editable: the package build assembles the guest stub).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"

if [ "$(id -u)" -ne 0 ]; then
    echo "setup-debian.sh: run as root (apt-get and /dev/kvm need it)" >&2
    exit 1
fi

# busybox-static: the demo and test rootfs. runc, runsc: the comparison runtimes in
# tests and bench. gcc, libc6-dev: static test programs. binutils: the guest stub build.
# podman, conmon, containerd, docker.io: the real OCI clients of tests/clients (iptables
# and uidmap are what they expect beside them; bsdutils has script(1) for ctr -t).
# debootstrap: the Debian bookworm rootfs of tests/guest/test_debian.py.
packages=(busybox-static runc runsc gcc libc6-dev binutils make strace hyperfine
          ca-certificates podman conmon containerd docker.io iptables uidmap bsdutils
          debootstrap)
if [ -z "$PY" ]; then
    packages+=(python3 python3-venv python3-pip)
fi
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
    echo "==> Debian packages already installed"
fi

PY=$(command -v python3)
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
    echo "setup-debian.sh: $PY is older than Python 3.10" >&2
    exit 1
fi
# A Python whose stdlib carries EXTERNALLY-MANAGED (Debian's) or that lacks pip gets
# a virtual environment; scripts/lib.sh then picks .venv/bin/python3.
if [ -x "$REPO/.venv/bin/python3" ] || ! "$PY" -m pip --version >/dev/null 2>&1 || \
   [ -f "$("$PY" -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
    if [ ! -x "$REPO/.venv/bin/python3" ]; then
        echo "==> creating $REPO/.venv"
        dpkg-query -W python3-venv >/dev/null 2>&1 || apt-get install -y -qq python3-venv
        "$PY" -m venv "$REPO/.venv"
    fi
    PY="$REPO/.venv/bin/python3"
fi

echo "==> pip install '.[test]' with $PY"
# A stale in-tree build directory would ship files that no longer exist.
rm -rf "$REPO/build" "$REPO"/*.egg-info
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "$REPO[test]"
rm -rf "$REPO/build" "$REPO"/*.egg-info
# bin/quark of this checkout (tests, bench/) hands runs to a template through the
# quark-client beside it, as the installed one does (setup.py builds that one).
gcc -O2 -Wall -o "$REPO/bin/quark-client" "$REPO/quark/template/client.c"
# The plugin distributions: bridge networking, and TSoR (reports when there is no
# RDMA device; pyverbs comes from Debian's python3-pyverbs where RDMA hardware is).
"$PY" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    "$REPO/plugins/net_bridge" "$REPO/plugins/net_rdma"
rm -rf "$REPO"/plugins/*/build "$REPO"/plugins/*/*.egg-info
# bin/quark runs Python with -OO, whose bytecode is the .opt-2.pyc that pip does not
# write: compile it now for the standard library, the site-packages and this
# checkout, so that no command compiles at start (or every time, run by a user who
# cannot write there).
mapfile -t libdirs < <("$PY" -c 'import sysconfig
print("\n".join(dict.fromkeys(sysconfig.get_path(k) for k in ("stdlib", "purelib", "platlib"))))')
"$PY" -OO -m compileall -q -j 0 -x '/(test|tests|idlelib|lib2to3|tkinter|turtledemo)/' \
    "${libdirs[@]}" "$REPO/quark" "$REPO/plugins" >/dev/null ||
    echo "==> note: some files did not byte-compile (each compiles when imported)"
# The console script lands in the interpreter's scripts directory, which may not be on
# PATH (a venv) or not yet shimmed (pyenv): make `quark` resolve to it.
bin="$("$PY" -c 'import sysconfig; print(sysconfig.get_path("scripts"))')/quark"
hash -r
if [ "$(command -v quark || true)" != "$bin" ] && ! quark --version >/dev/null 2>&1; then
    ln -sf "$bin" /usr/local/bin/quark
    hash -r
fi

echo "==> $(quark --version | head -1) at $(command -v quark)"
if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
    echo "==> /dev/kvm is usable"
else
    echo "==> warning: /dev/kvm is missing or not read-write: containers cannot run here"
fi
