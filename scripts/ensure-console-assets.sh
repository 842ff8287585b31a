#!/usr/bin/env bash
# The console's front-end packages (issue 23), installed from npm, pinned, never committed, never from a CDN:
#   htmx.org   pinned in tools/console/package.json and package-lock.json, installed with `npm ci` into
#              ${CELLPLANE_CONSOLE_CACHE:-$HOME/.cache/cellplane/console}/htmx.org-<version>/ (its package directory:
#              dist/htmx.min.js is what the console serves; src/cellplane/console/assets.py finds it there).
# A no-op once installed (about 10 ms). Called by `make run`, `make test` and `make bench`.
# - `--htmx`: print the path of htmx.min.js and exit 0 if it is installed, 1 if not; never installs.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
tools="$here/tools/console"
version=$(sed -n 's/^ *"htmx.org": "\([0-9.]*\)".*/\1/p' "$tools/package.json")
cache=${CELLPLANE_CONSOLE_CACHE:-$HOME/.cache/cellplane/console}
dir="$cache/htmx.org-$version"
js="$dir/dist/htmx.min.js"

if [[ ${1:-} == --htmx ]]; then
    echo "$js"
    [[ -f $js ]]
    exit
fi

if [[ ! -f $js ]]; then
    command -v npm >/dev/null || { echo "ensure-console-assets: npm is missing; run scripts/ensure-build-tools.sh" >&2; exit 1; }
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.install-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    cp "$tools/package.json" "$tools/package-lock.json" "$tmp/"
    echo "ensure-console-assets: installing htmx.org $version from npm into $dir" >&2
    (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    [[ -f $tmp/node_modules/htmx.org/dist/htmx.min.js ]] \
        || { echo "ensure-console-assets: npm ci left no htmx.org/dist/htmx.min.js" >&2; exit 1; }
    rm -rf "$dir"
    mv "$tmp/node_modules/htmx.org" "$dir"
    rm -rf "$tmp"
    trap - EXIT
fi
