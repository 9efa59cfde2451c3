#!/usr/bin/env bash
# Run the whole test suite. Tests needing /dev/kvm, root, runc or runsc skip with a
# printed reason only where those are absent. Extra arguments go to pytest.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO"
if [ -z "$PY" ]; then
    echo "test.sh: no python3; run scripts/setup-debian.sh first" >&2
    exit 1
fi
"$PY" -m pytest -v -ra tests "$@"
rc=$?
if [ $rc -eq 5 ]; then
    echo "test.sh: pytest collected no tests (exit 5): treating as a failure" >&2
    exit 1
fi
exit $rc
