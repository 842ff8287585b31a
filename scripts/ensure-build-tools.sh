#!/usr/bin/env bash
# Make sure the tools builds use are installed: git (sources), Node.js and npm (Node.js and static apps),
# a JDK and Maven (Java apps; Debian's openjdk-17-jdk-headless and maven).
# Go (Go modules; the official tarball's /usr/local/go/bin/go counts), php-cli (PHP apps), ruby and bundler
# (Ruby apps, vendored gems).
#
# - Already on PATH: print their versions and do nothing else.
# - Missing and root: apt-get install them from Debian's packages.
# - Missing and not root: say what is missing and exit 1 (we won't guess at sudo).
set -euo pipefail

missing=()
command -v git >/dev/null || missing+=(git)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v javac >/dev/null || missing+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v go >/dev/null || [[ -x /usr/local/go/bin/go ]] || missing+=(golang-go)
command -v php >/dev/null || missing+=(php-cli)
command -v ruby >/dev/null || missing+=(ruby)
command -v bundle >/dev/null || missing+=(ruby-bundler)

if [[ ${#missing[@]} -eq 0 ]]; then
    go=$(command -v go || echo /usr/local/go/bin/go)
    echo "ensure-build-tools: git $(git --version | awk '{print $3}'), node $(node --version), npm $(npm --version)," \
        "javac $(javac -version 2>&1 | awk '{print $2}'), mvn $(mvn -B -v 2>/dev/null | awk 'NR==1{print $3}')," \
        "$("$go" env GOVERSION), php $(php -r 'echo PHP_VERSION;'), ruby $(ruby -e 'print RUBY_VERSION')"
    exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "ensure-build-tools: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
    exit 1
fi
echo "ensure-build-tools: installing ${missing[*]} from Debian's packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
