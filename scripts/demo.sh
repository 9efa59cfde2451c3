#!/usr/bin/env bash
# Build a busybox bundle in a temporary directory and run it with `quark run`.
# Runs this checkout's code (with the dependencies setup-debian.sh installed).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

QUARK=(env PYTHONPATH="$REPO" "$PY" -m quark.cli)
dir=$(mktemp -d /tmp/quark-demo.XXXXXX)
trap 'rm -rf "$dir"' EXIT

"${QUARK[@]}" bundle busybox "$dir/bundle" -- \
    sh -c 'echo hello from quark; uname -a; ls /; exit 0' >/dev/null
echo "==> quark run --bundle $dir/bundle demo"
"${QUARK[@]}" run --bundle "$dir/bundle" "demo-$$"
