# Shared by the scripts: the repository root and the Python that has quark installed.
# setup-debian.sh installs into the python3 on PATH when pip may write there, else
# into a virtual environment at $REPO/.venv (Debian's own python3 is
# "externally managed", PEP 668).
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -x "$REPO/.venv/bin/python3" ]; then
    PY="$REPO/.venv/bin/python3"
else
    PY=$(command -v python3 || true)
fi
