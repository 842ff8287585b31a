#!/usr/bin/env bash
# Make sure the browser tests have what they need (tests/browserkit.py uses them):
#   chromium            Debian's package (apt-get, only when missing); Playwright drives it through
#                       `executable_path` and never downloads browsers of its own
#   playwright          the Python package pinned in pyproject.toml's test extras, in the venv (.venv or $VENV)
#   axe-core            pinned in tools/browser/package.json and package-lock.json, installed from npm with
#                       `npm ci` into ${CELLPLANE_BROWSER_CACHE:-$HOME/.cache/cellplane/browser}/axe-core-<version>/
#                       (written under a temporary name and renamed when complete: a present dir is a complete one)
#
# - All present: print the versions and exit (about 0.2 s: asking the venv's Python for Playwright's version).
# - Missing and not root (chromium): say what is missing and exit 1 (we won't guess at sudo).
# - `--axe`: print the path of axe.min.js and exit 0 if it is installed, 1 if not; never installs.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tools="$root/tools/browser"
venv=${VENV:-$root/.venv}
axe_version=$(sed -n 's/^ *"axe-core": "\([0-9.]*\)".*/\1/p' "$tools/package.json")
cache=${CELLPLANE_BROWSER_CACHE:-$HOME/.cache/cellplane/browser}
axe_dir="$cache/axe-core-$axe_version"
axe_js="$axe_dir/node_modules/axe-core/axe.min.js"

if [[ ${1:-} == --axe ]]; then
    echo "$axe_js"
    [[ -f $axe_js ]]
    exit
fi

# chromium: Debian's package
if ! command -v chromium >/dev/null; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "ensure-browser: chromium is missing; install it (Debian: apt-get install chromium)" >&2
        exit 1
    fi
    echo "ensure-browser: installing chromium from Debian's packages" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi

# playwright: the pin of pyproject.toml, in the venv
pin=$(sed -n 's/^ *"playwright==\([0-9.]*\)".*/\1/p' "$root/pyproject.toml")
[[ -n $pin ]] || { echo "ensure-browser: no playwright==<version> in pyproject.toml" >&2; exit 1; }
[[ -x $venv/bin/python ]] || { echo "ensure-browser: no venv at $venv; run \`make venv\` first" >&2; exit 1; }
have=$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("playwright"))' 2>/dev/null || true)
if [[ $have != "$pin" ]]; then
    echo "ensure-browser: installing playwright $pin into $venv (had: ${have:-none})" >&2
    # Only the Python package and its driver: browsers come from Debian (no `playwright install`).
    if [[ -x $venv/bin/uv ]]; then
        "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" "playwright==$pin"
    else
        "$venv/bin/pip" install --quiet --disable-pip-version-check "playwright==$pin"
    fi
fi

# axe-core: npm ci of the committed lock into the cache
if [[ ! -f $axe_js ]]; then
    command -v npm >/dev/null || { echo "ensure-browser: npm is missing; run scripts/ensure-build-tools.sh" >&2; exit 1; }
    mkdir -p "$cache"
    tmp=$(mktemp -d "$cache/.install-XXXXXX")
    trap 'rm -rf "$tmp"' EXIT
    cp "$tools/package.json" "$tools/package-lock.json" "$tmp/"
    echo "ensure-browser: installing axe-core $axe_version from npm into $axe_dir" >&2
    (cd "$tmp" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    [[ -f $tmp/node_modules/axe-core/axe.min.js ]] || { echo "ensure-browser: npm ci left no axe.min.js" >&2; exit 1; }
    rm -rf "$axe_dir"
    mv "$tmp" "$axe_dir"
    trap - EXIT
fi

echo "ensure-browser: $(chromium --version 2>/dev/null | head -1), playwright $pin, axe-core $axe_version ($axe_js)"
