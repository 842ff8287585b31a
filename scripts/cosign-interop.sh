#!/usr/bin/env bash
# Build cosign (pinned) from its Go modules into a cache outside the repository, then check that it verifies the
# signatures cellplane.images writes (scripts/cosign-interop.py). Not part of `make test`: the first build of
# cosign downloads and compiles a few hundred modules (about 10 minutes on a 2-core machine).
set -euo pipefail
COSIGN_VERSION=${COSIGN_VERSION:-v2.4.1}
cache=${COSIGN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cellplane-cosign}
go=${GO:-$(command -v go || echo /usr/local/go/bin/go)}
if [[ ! -x $cache/bin/cosign-$COSIGN_VERSION ]]; then
    mkdir -p "$cache/bin"
    GOBIN=$cache/tmpbin "$go" install "github.com/sigstore/cosign/v2/cmd/cosign@$COSIGN_VERSION"
    mv "$cache/tmpbin/cosign" "$cache/bin/cosign-$COSIGN_VERSION"
fi
here=$(cd "$(dirname "$0")/.." && pwd)
bash "$here/scripts/ensure-registry-tools.sh" >/dev/null
exec "$here/.venv/bin/python" "$here/scripts/cosign-interop.py" "$cache/bin/cosign-$COSIGN_VERSION"
