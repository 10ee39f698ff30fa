#!/usr/bin/env bash
# Make sure the base images the build expects exist locally: the python image serving/Dockerfile
# starts from and the unprivileged Nginx image the pod runs beside it (names in images/upstream.env,
# overridable by the environment variables PYTHON_IMAGE and NGINX_IMAGE).
#
# For each image: present already -> nothing to do (idempotent); else pull it; where no registry
# answers (air-gapped, or this machine), build a local stand-in under the same name from the
# Debian mirror the host's apt is configured with: debootstrap a minimal root filesystem once
# (localhost/modelops/debootstrap:<suite>), then images/python/Dockerfile or images/nginx/Dockerfile
# on top of it.
#
# usage: images/build-base-images.sh
#   MODELOPS_BASE_IMAGES=auto (default: pull, else stand-in) | pull (pull or fail) | local (stand-in)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=images/upstream.env
source <(grep -E '^[A-Z_]+=' "$here/upstream.env" | sed 's/^/: ${/; s/=/:=/; s/$/}/')
mode=${MODELOPS_BASE_IMAGES:-auto}
engine=$("$here/engine.sh")
debian_image=localhost/modelops/debootstrap:$DEBIAN_SUITE

pull() {
  case $engine in
    docker | podman) "$engine" pull -q "$1" >/dev/null ;;
    buildah) buildah pull -q "$1" >/dev/null ;;
  esac
}

debootstrap_image() {
  "$here/image-exists.sh" "$debian_image" && return 0
  command -v debootstrap >/dev/null || { echo "error: debootstrap is not installed (make image-tools)" >&2; exit 1; }
  [[ $(id -u) -eq 0 ]] || { echo "error: debootstrap needs root to build $debian_image" >&2; exit 1; }
  local mirror work
  mirror=$("$here/debian-mirror.sh")
  work=$(mktemp -d "${TMPDIR:-/tmp}/modelops-debootstrap.XXXXXX")
  echo "debootstrap $DEBIAN_SUITE from $mirror (about a minute)" >&2
  debootstrap --variant=minbase --include=ca-certificates "$DEBIAN_SUITE" "$work/rootfs" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/cache/apt/*.bin \
    "$work"/rootfs/var/lib/apt/lists/* "$work"/rootfs/usr/share/doc/* "$work"/rootfs/usr/share/man/* \
    "$work"/rootfs/usr/share/locale/* "$work"/rootfs/usr/share/info/*
  tar --numeric-owner -C "$work/rootfs" -cf "$work/rootfs.tar" .
  rm -rf "$work/rootfs"
  "$here/build.sh" -q -f "$here/base/Dockerfile" -t "$debian_image" "$work" >/dev/null
  rm -rf "$work"
}

ensure() {  # ensure NAME STAND-IN-DIR
  local name=$1 dir=$2
  if "$here/image-exists.sh" "$name"; then
    echo "base image present: $name" >&2; return 0
  fi
  if [[ $mode != local ]]; then
    if pull "$name" 2>/dev/null; then echo "pulled $name" >&2; return 0; fi
    [[ $mode == pull ]] && { echo "error: cannot pull $name" >&2; exit 1; }
    echo "no registry answers for $name: building a local stand-in" >&2
  fi
  debootstrap_image
  "$here/build.sh" -q -f "$here/$dir/Dockerfile" --build-arg "DEBIAN_IMAGE=$debian_image" \
    --build-arg "STANDS_IN_FOR=$name" -t "$name" "$here/$dir" >/dev/null
  echo "built local stand-in: $name" >&2
}

ensure "$PYTHON_IMAGE" python
ensure "$NGINX_IMAGE" nginx
