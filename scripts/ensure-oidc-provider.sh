#!/usr/bin/env bash
# Make sure the single sign-on tests have their OpenID Connect provider (tests/oidckit.py starts it):
#   oidc-provider       panva's certified provider library, pinned in tools/oidc/package.json and
#                       package-lock.json, installed from npm with `npm ci` into
#                       ${CELLPLANE_OIDC_CACHE:-$HOME/.cache/cellplane/oidc}/oidc-provider-<version>/
#                       (written under a temporary name and renamed when complete: a present dir is a complete one)
#   node                Node.js 20 or later (scripts/ensure-build-tools.sh installs it)
#
# - Present: print the version and exit (a few milliseconds).
# - `--path`: print the directory holding node_modules/ and exit 0 if it is installed, 1 if not; never installs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/tools/oidc"
version=$(sed -n 's/^ *"oidc-provider": "\([0-9.]*\)".*/\1/p' "$tools/package.json")
[[ -n $version ]] || { echo "ensure-oidc-provider: no pinned oidc-provider version in tools/oidc/package.json" >&2; exit 1; }
cache=${CELLPLANE_OIDC_CACHE:-$HOME/.cache/cellplane/oidc}
dir="$cache/oidc-provider-$version"
marker="$dir/node_modules/oidc-provider/package.json"

if [[ ${1:-} == --path ]]; then
    echo "$dir"
    [[ -f $marker ]]
    exit
fi

if [[ ! -f $marker ]]; then
    command -v npm >/dev/null || { echo "ensure-oidc-provider: npm is missing; run scripts/ensure-build-tools.sh" >&2; exit 1; }
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.install-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    cp "$tools/package.json" "$tools/package-lock.json" "$tmp/"
    echo "ensure-oidc-provider: installing oidc-provider $version from npm into $dir" >&2
    (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    [[ -f $tmp/node_modules/oidc-provider/package.json ]] || { echo "ensure-oidc-provider: npm ci left no oidc-provider" >&2; exit 1; }
    rm -rf "$dir"
    mv "$tmp" "$dir"
    trap - EXIT
fi

echo "ensure-oidc-provider: oidc-provider $version, node $(node --version 2>/dev/null || echo missing) ($dir)"
