#!/usr/bin/env bash
# Make sure PostgreSQL *server binaries* (initdb, pg_ctl, postgres) are installed.
#
# The tests never use a system cluster: tests/pgserver.py runs its own throwaway server from
# these binaries. So all we need is Debian's postgresql package on disk, not a running service.
#
# - Already installed (initdb under /usr/lib/postgresql/*/bin): print it and do nothing else.
# - Missing and root: apt-get install postgresql, then stop whatever cluster the package
#   created and started (see below).
# - Missing and not root: say so and exit 1 (we won't guess at sudo).
#
# PG_LIB_DIR overrides /usr/lib/postgresql (only useful to test this script).
set -euo pipefail

pg_lib_dir="${PG_LIB_DIR:-/usr/lib/postgresql}"

find_initdb() {
    # Highest major version first (sort -V: 15 after 9.6).
    local f
    for f in $(printf '%s\n' "$pg_lib_dir"/*/bin/initdb | sort -rV); do
        if [[ -x "$f" ]]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

if initdb="$(find_initdb)"; then
    echo "ensure-postgres: found $initdb"
    exit 0
fi

if [[ "$(id -u)" -ne 0 ]]; then
    echo "ensure-postgres: PostgreSQL server binaries not found under $pg_lib_dir/*/bin; install them (as root: apt-get install postgresql) and re-run" >&2
    exit 1
fi

echo "ensure-postgres: no initdb under $pg_lib_dir/*/bin; installing Debian's postgresql package"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends postgresql

# The package's postinst creates a "main" cluster and, where an init system or invoke-rc.d
# policy allows it, starts it on port 5432. We never use it, and a stray server left behind
# would hold port 5432 and memory for the rest of the machine's life. It didn't exist before
# this install (we only get here when no server binaries were present), so stopping every
# online cluster stops only what the install started. The cluster itself is left on disk:
# deleting it (pg_dropcluster) would be a surprise for anyone who later wants it.
if command -v pg_lsclusters >/dev/null 2>&1; then
    pg_lsclusters --no-header 2>/dev/null | while read -r ver name _port status _rest; do
        if [[ "$status" == online* ]]; then
            echo "ensure-postgres: stopping cluster $ver/$name started by the package install"
            pg_ctlcluster "$ver" "$name" stop || echo "ensure-postgres: warning: could not stop cluster $ver/$name" >&2
        fi
    done
fi

if initdb="$(find_initdb)"; then
    echo "ensure-postgres: found $initdb"
    exit 0
fi
echo "ensure-postgres: installed postgresql but still no initdb under $pg_lib_dir/*/bin" >&2
exit 1
