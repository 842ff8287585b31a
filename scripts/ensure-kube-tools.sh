#!/usr/bin/env bash
# Build the test cluster's programs from source, from the Go module proxy, into a cache keyed by their
# versions (tests/kubecluster.py starts them):
#   bin/kube-apiserver, bin/kube-controller-manager, bin/kube-scheduler   k8s.io/kubernetes (tools/kube/kubernetes)
#   bin/etcd                                                              go.etcd.io/etcd/server/v3, the version
#                                                                         Kubernetes' go.mod pins (same module)
#   bin/kwok                                                              sigs.k8s.io/kwok (tools/kube/kwok)
#   crds/gateway-api/*.yaml       the Gateway API standard CRDs, copied from the sigs.k8s.io/gateway-api module
#   kwok/stages.yaml              kwok's default node and pod stages, from the sigs.k8s.io/kwok module
# Versions: tools/kube/versions.env; the modules' go.mod/go.sum are committed (tools/kube/gen-gomod.py makes
# Kubernetes'). The cache dir is ${CELLPLANE_KUBE_CACHE:-$HOME/.cache/cellplane/kube}/<version>-<hash of those
# files, this script and the Go version>; it is written under a temporary name and renamed when complete, so a present
# dir is a complete one.
#
# - Present: print the dir, mark it used (its `.used` file's time) and exit (about 15 ms: hashing seven small files
#   and `go env GOVERSION`).
# - Missing: build with the shared Go module and build caches. Cold (nothing compiled yet) on 2 cores this
#   takes long (see docs/development.md, "The test cluster"); Go's build cache makes a rebuild after a
#   version bump recompile only what changed.
# - `--dir`: print the dir the binaries belong in and exit 0 if it is complete, 1 if not; never builds.
# - After a build, the cache's other dirs not used for KEEP_DAYS days (another version, or an older hash; a
#   checkout still on one marks it used whenever it runs this) and unfinished builds older than a day are removed:
#   each dir is about 400 MB.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
kube="$root/tools/kube"
# The machine's own Go (never a toolchain switch), go.mod/go.sum as committed, no VCS stamp of this repository.
export GOTOOLCHAIN=local GOFLAGS="-mod=readonly -buildvcs=false"
command -v go >/dev/null || PATH="$PATH:/usr/local/go/bin"
command -v go >/dev/null || { echo "ensure-kube-tools: go not found (install Go 1.26 or newer)" >&2; exit 1; }

# shellcheck source=/dev/null
source "$kube/versions.env"
hash=$( { cat "${BASH_SOURCE[0]}" "$kube/versions.env" "$kube/kubernetes/go.mod" "$kube/kubernetes/go.sum" \
            "$kube/kubernetes/cmd/etcd/main.go" "$kube/kwok/go.mod" "$kube/kwok/go.sum"
          go env GOVERSION; } | sha256sum | cut -c1-12)
cache=${CELLPLANE_KUBE_CACHE:-$HOME/.cache/cellplane/kube}
dir="$cache/$KUBERNETES_VERSION-$hash"

if [[ ${1:-} == --dir ]]; then
    echo "$dir"
    [[ -d $dir ]]
    exit
fi
if [[ -d $dir ]]; then
    touch "$dir/.used"
    echo "ensure-kube-tools: $dir (Kubernetes $KUBERNETES_VERSION, kwok $KWOK_VERSION, Gateway API $GATEWAY_API_VERSION)"
    exit 0
fi

# k8s.io/kubernetes names the Go it needs in its go.mod (`go 1.26.0` for v1.37): say so in one line rather
# than let the first `go build` fail on it.
need=$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$kube/kubernetes/go.mod")
have=$(go env GOVERSION | sed 's/^go//')
if [[ $(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1) != "$need" ]]; then
    echo "ensure-kube-tools: Kubernetes $KUBERNETES_VERSION needs Go $need or newer, this machine has go$have" \
         "($(command -v go)); install a newer Go or pin an older Kubernetes in tools/kube/versions.env" >&2
    exit 1
fi
[[ $(cd "$kube/kwok" && go list -m -f '{{.Version}}' sigs.k8s.io/kwok) == "$KWOK_VERSION" ]] || {
    echo "ensure-kube-tools: tools/kube/kwok/go.mod does not require sigs.k8s.io/kwok $KWOK_VERSION" \
         "(tools/kube/versions.env); run \`go get sigs.k8s.io/kwok@$KWOK_VERSION && go mod tidy\` there" >&2
    exit 1
}

mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.build-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin" "$tmp/crds/gateway-api"
start=$SECONDS
echo "ensure-kube-tools: building Kubernetes $KUBERNETES_VERSION (kube-apiserver, kube-controller-manager," \
     "kube-scheduler), etcd and kwok $KWOK_VERSION into $dir; cold, this takes many minutes" >&2
flags=(-trimpath "-ldflags=-s -w")
# One `go build` for the four Kubernetes-side programs: the packages they share compile once.
(cd "$kube/kubernetes" && go build "${flags[@]}" -o "$tmp/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler ./cmd/etcd)
(cd "$kube/kwok" && go build "${flags[@]}" -o "$tmp/bin/" sigs.k8s.io/kwok/cmd/kwok)

gwdir=$(cd "$tmp" && GOFLAGS= go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" \
    | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -d $gwdir/config/crd/standard ]] || {
    echo "ensure-kube-tools: sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION has no config/crd/standard" >&2; exit 1; }
cp "$gwdir"/config/crd/standard/*.yaml "$tmp/crds/gateway-api/"
# kwok's default stages, as kwokctl configures them (the kwok binary alone has none): nodes become Ready and
# keep their Lease fresh; pods become Running/Ready, Succeeded when their containers are all done, and go
# away when deleted.
kwokdir=$(cd "$kube/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$tmp/kwok"
for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
             pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    cat "$kwokdir/kustomize/stage/$stage.yaml"; echo "---"
done > "$tmp/kwok/stages.yaml"
chmod -R u+w "$tmp/crds" "$tmp/kwok"

mv "$tmp" "$dir"
trap - EXIT
touch "$dir/.used"
echo "ensure-kube-tools: built $dir in $((SECONDS - start)) s" >&2
KEEP_DAYS=7
for old in "$cache"/*/; do
    old=${old%/}
    [[ $old == "$dir" ]] && continue
    used="$old/.used"; [[ -e $used ]] || used=$old
    if [[ -n $(find "$used" -maxdepth 0 -mtime +$KEEP_DAYS) ]]; then
        echo "ensure-kube-tools: removing $old (not used for $KEEP_DAYS days)" >&2
        chmod -R u+w "$old" && rm -rf "$old"
    fi
done
find "$cache" -maxdepth 1 -name '.build-*' -mtime +1 -exec rm -rf {} + 2>/dev/null || true
ls -l "$dir/bin" >&2
