#!/bin/sh
# Installs pgvector into Debian's PostgreSQL server (for the tests' throwaway servers, tests/pg_server.py),
# when its extension files are missing. Run as root (or with sudo) by `make postgres`.
#
# Debian's postgresql-<major>-pgvector binary package is used where the archive has one. Debian 12 has none
# for its PostgreSQL 15 (the package starts with Debian 13's PostgreSQL 17): pgvector is then built from
# Debian's own source package (the newest suite's, fetched with `apt-get source` through a private
# sources list, so the machine's apt setup is untouched) against postgresql-server-dev-<major>.
set -eu

SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
BINDIR=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$BINDIR" ] || { echo "install_pgvector: no /usr/lib/postgresql/<major>/bin: install postgresql first" >&2; exit 2; }
MAJOR=$(basename "$(dirname "$BINDIR")")
if [ -f "/usr/share/postgresql/$MAJOR/extension/vector.control" ]; then
    exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if [ -n "$(apt-cache policy "postgresql-$MAJOR-pgvector" 2>/dev/null | awk '/Candidate:/ && $2 != "(none)" {print $2}')" ]; then
    echo "install_pgvector: installing Debian's postgresql-$MAJOR-pgvector"
    $SUDO apt-get install -y -qq "postgresql-$MAJOR-pgvector" >/dev/null
    exit 0
fi

echo "install_pgvector: Debian has no postgresql-$MAJOR-pgvector; building pgvector from Debian's source package"
$SUDO apt-get install -y -qq "postgresql-server-dev-$MAJOR" make gcc >/dev/null
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/lists/partial" "$WORK/cache/archives/partial"
echo "deb-src http://deb.debian.org/debian trixie main" > "$WORK/sources.list"
APT_PRIVATE="-o Dir::Etc::SourceList=$WORK/sources.list -o Dir::Etc::SourceParts=/dev/null \
 -o Dir::State::Lists=$WORK/lists -o Dir::Cache=$WORK/cache -o APT::Sandbox::User=root"
# shellcheck disable=SC2086 # the options are words
apt-get $APT_PRIVATE update -qq
# shellcheck disable=SC2086
(cd "$WORK" && apt-get $APT_PRIVATE source --download-only -qq pgvector >/dev/null)
tar -xzf "$WORK"/pgvector_*.orig.tar.gz -C "$WORK"
SRC=$(ls -d "$WORK"/pgvector-*/ | head -n 1)
# OPTFLAGS="": no -march=native, so the library runs on any machine of the same architecture
make -s -C "$SRC" PG_CONFIG="$BINDIR/pg_config" OPTFLAGS="" >/dev/null
$SUDO make -s -C "$SRC" PG_CONFIG="$BINDIR/pg_config" OPTFLAGS="" install >/dev/null
echo "install_pgvector: pgvector installed for PostgreSQL $MAJOR"
