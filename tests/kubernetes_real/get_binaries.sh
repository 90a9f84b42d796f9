#!/bin/sh
# Get a real Kubernetes control plane for tests/kubernetes_real: kube-apiserver,
# kube-controller-manager and kube-scheduler built from Debian's source package
# `kubernetes` with Debian's Go (offline: the sources are vendored), plus Debian's
# etcd. Cached outside the repo; a second run only prints the directory.
# First run: the Go build, 4.5 minutes measured on an idle 2-core machine, 11.6 at the
# lowest priority on a busy one (about 19 reported elsewhere); then nothing.
set -eu
VERSION=1.20.5+really1.20.2
CACHE=${JUPYTER_ENVMGR_KUBE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/jupyter-envmgr-tests/kube}/$VERSION
BIN=$CACHE/bin
built() { [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/kube-scheduler" ]; }
if built && command -v etcd >/dev/null; then
    echo "$BIN"; exit 0
fi
SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
# `apt-get source` needs deb-src lines: add them beside the deb ones if absent.
if ! grep -rqs '^Types:.*deb-src\|^deb-src' /etc/apt/sources.list /etc/apt/sources.list.d; then
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -e "$f" ] || continue
        grep -q '^Types: deb$' "$f" && $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' "$f"
    done
    if [ -f /etc/apt/sources.list ]; then
        sed -n 's/^deb /deb-src /p' /etc/apt/sources.list | $SUDO tee /etc/apt/sources.list.d/envmgr-deb-src.list >/dev/null
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >&2
if built; then  # only etcd is missing
    $SUDO apt-get install -y -qq etcd-server >&2
    echo "$BIN"; exit 0
fi
$SUDO apt-get install -y -qq golang-1.19-go rsync etcd-server dpkg-dev >&2
mkdir -p "$CACHE/src" "$BIN"
cd "$CACHE/src"
if ! ls -d kubernetes-*/ >/dev/null 2>&1; then
    apt-get source --download-only kubernetes >&2  # bookworm's, with its security updates
    dpkg-source -x kubernetes_*.dsc >&2
fi
SRC=$CACHE/src/kubernetes-$VERSION
[ -d "$SRC" ] || { echo "Debian's kubernetes source is not $VERSION: $(ls "$CACHE/src")" >&2; exit 1; }
cd "$SRC"
PATH=/usr/lib/go-1.19/bin:$PATH GOPROXY=off GOFLAGS=-mod=vendor CGO_ENABLED=0 \
    GOCACHE="$CACHE/gocache" GOPATH="$CACHE/gopath" \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >&2
for b in kube-apiserver kube-controller-manager kube-scheduler; do
    cp "$(find _output -type f -name "$b" -perm -u+x | head -n1)" "$BIN/$b"
done
# The sources and the Go cache are only needed to build: keep the binaries.
rm -rf "$CACHE/src" "$CACHE/gocache" "$CACHE/gopath"
echo "$BIN"
