#!/usr/bin/env bash
# Make sure the tools the image tests use are installed: Debian's docker-registry (the OCI distribution
# registry the tests start on 127.0.0.1), skopeo (inspects what was pushed), umoci (unpacks an image) and
# htpasswd (apache2-utils: the bcrypt password file of a registry with basic auth) and nginx (runs the server
# config of a static site's image, tests/test_image_static.py).
#
# - Already on PATH: print what is there and do nothing else.
# - Missing and root: apt-get install them from Debian's packages. The package's own service is not
#   wanted (the tests start their own registry on a free port), so it is stopped if a service manager
#   started it.
# - Missing and not root: say what is missing and exit 1 (we won't guess at sudo).
set -euo pipefail

missing=()
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v skopeo >/dev/null || missing+=(skopeo)
command -v umoci >/dev/null || missing+=(umoci)
command -v htpasswd >/dev/null || missing+=(apache2-utils)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "ensure-registry-tools: docker-registry, $(skopeo --version), $(umoci --version), htpasswd, nginx"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-registry-tools: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "ensure-registry-tools: installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}
for service in docker-registry nginx; do
    if command -v systemctl >/dev/null && systemctl is-active --quiet "$service" 2>/dev/null; then
        systemctl stop "$service" || true
    fi
done
