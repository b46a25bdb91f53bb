#!/bin/sh
# Install gatecord into a new virtual environment: first the locked dependencies, every file checked
# against requirements.lock's hashes, then gatecord's own wheel without dependencies (so nothing the
# lock does not name gets in); then check that the result is consistent and starts. The environment
# holds nothing else, not even pip (the installing Python's pip fills it, with --python).
#
#     deploy/install.sh LOCK_FILE WHEEL_DIR VENV
#
# The Dockerfile runs it. tests/test_deploy_replay.py runs this same script in a temporary folder,
# offline (PIP_NO_INDEX=1, PIP_FIND_LINKS=<the locked files, downloaded beforehand>).
set -eu
if [ "$#" -ne 3 ]; then
    echo "usage: $0 LOCK_FILE WHEEL_DIR VENV" >&2
    exit 2
fi
lock=$1
wheels=$2
venv=$3

python=${PYTHON:-python3}
"$python" -m venv --without-pip "$venv"
pip() { "$python" -m pip --python "$venv/bin/python" --disable-pip-version-check "$@"; }
pip install --no-cache-dir --require-hashes -r "$lock"
set -- "$wheels"/gatecord-*.whl
if [ "$#" -ne 1 ] || [ ! -f "$1" ]; then
    echo "$0: expected exactly one gatecord-*.whl in $wheels" >&2
    exit 1
fi
pip install --no-cache-dir --no-deps "$1"
pip check
"$venv/bin/gatecord" --help >/dev/null
