#!/usr/bin/env bash
# Installs the trove-k2hdkc plugin into a venv that has trove, and runs its
# tests there against that real trove (trove-manage on a throw-away sqlite
# database, trove's own validation and template code).
#
#   bash packaging/trove/tests/run.sh /path/to/venv/bin/python
#   PEER_PYTHON=/path/to/venv/bin/python bash packaging/trove/tests/run.sh
#
# Safe to re-run: the plugin is reinstalled from this tree each time, pytest
# is installed only when missing, and every database lives in a temporary
# directory. Extra arguments after the interpreter go to pytest.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
plugin=$(dirname "$here")
repo=$(cd "$plugin/../.." && pwd)

if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    py=$1
    shift
else
    py=${PEER_PYTHON:-}
fi
if [ -z "$py" ]; then
    echo "usage: $0 VENV_PYTHON [pytest args] (or set PEER_PYTHON)" >&2
    exit 2
fi
case $py in
    */*) py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")" ;;  # absolute, symlink kept (venv)
    *) py=$(command -v "$py") ;;
esac
if ! "$py" -c 'import trove' >/dev/null 2>&1; then
    echo "$py cannot import trove; the plugin is tested against a real trove" >&2
    exit 2
fi

export PYTHONDONTWRITEBYTECODE=1 PIP_DISABLE_PIP_VERSION_CHECK=1
unset TROVE_K2HDKC_DISABLE

echo "==> installing $plugin into $("$py" -c 'import sys; print(sys.prefix)')"
"$py" -m pip install -q --force-reinstall --no-deps "$plugin"

if ! "$py" -c 'import pytest' >/dev/null 2>&1; then
    req=$(grep -iE '^pytest([=<>!~ ]|$)' "$repo/tests/peer/requirements.txt" || echo pytest)
    echo "==> installing $req"
    "$py" -m pip install -q "$req"
fi

echo "==> pytest $here"
cd "$here"
exec "$py" -m pytest -q "$here" "$@"
