#!/usr/bin/env bash
# Make sure the base images exist locally: the Python image serving/Dockerfile starts from and the
# unprivileged Nginx image the pod runs beside it. Which names those are is decided by
# images/base-images.sh (upstream names from images/upstream/Dockerfile, PYTHON_IMAGE / NGINX_IMAGE
# overrides, local stand-ins).
#
# For each image: present already (the upstream image, or its local stand-in) -> nothing to do
# (idempotent); else pull the upstream image; where no registry answers, build a local stand-in
# under its own name, localhost/modelops/base-{python,nginx}:<suite>, from the Debian mirror the
# host's apt is configured with: debootstrap a minimal root filesystem once
# (localhost/modelops/debootstrap:<suite>), then images/python/Dockerfile or images/nginx/Dockerfile
# on top of it, in two passes: stage "packages", whose Python or Nginx version is read, then the
# image with the labels io.modelops.base.stand-in-for=<upstream name> and
# io.modelops.base.holds=<that version>. An image set by PYTHON_IMAGE / NGINX_IMAGE is pulled
# when missing, never replaced by a stand-in. A stand-in found under an upstream name (it carries
# a stand-in label, see images/base-images.sh) is untagged, so that name stays free for the upstream image.
#
# usage: images/build-base-images.sh
#   MODELOPS_BASE_IMAGES=auto (default: pull, else stand-in) | pull (pull or fail) | local (stand-in)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# podman and buildah read the repository's settings (images/containers.conf), as make sets them.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
mode=${MODELOPS_BASE_IMAGES:-auto}
engine=$("$here/engine.sh")
DEBIAN_SUITE=$(sed -n 's/^ARG DEBIAN_SUITE=//p' "$here/upstream/Dockerfile")
eval "$("$here/base-images.sh" --candidates | grep -E '^[A-Z]+_(UPSTREAM|STAND_IN)=[A-Za-z0-9@:./_-]+$')"
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

# in IMAGE CMD...: run CMD in a throw-away container of IMAGE (no network), stdout and stderr.
in_image() {
  local image=$1 ctr; shift
  case $engine in
    docker | podman) "$engine" run --rm --network none --entrypoint "$1" "$image" "${@:2}" 2>&1 ;;
    buildah) ctr=$(buildah from -q "$image"); buildah run --network none "$ctr" "$@" 2>&1; buildah rm "$ctr" >/dev/null ;;
  esac
}

stand_in_for() { "$here/base-images.sh" --stand-in-for "$1"; }

stand_in() {  # stand_in KIND NAME UPSTREAM: build images/KIND/Dockerfile as NAME
  local kind=$1 name=$2 upstream=$3 packages holds
  debootstrap_image
  packages=$name-packages
  "$here/build.sh" -q -f "$here/$kind/Dockerfile" --build-arg "DEBIAN_IMAGE=$debian_image" \
    --build-arg "STANDS_IN_FOR=$upstream" --build-arg HOLDS= --target packages -t "$packages" \
    "$here/$kind" >/dev/null
  case $kind in
    python) holds="python $(in_image "$packages" python3 -c 'import platform; print(platform.python_version())')" ;;
    nginx) holds="nginx $(in_image "$packages" nginx -v | sed -n 's#^nginx version: nginx/##p')" ;;
  esac
  [[ $holds =~ ^[a-z]+\ [0-9][0-9.]*$ ]] || { echo "error: cannot read the version in $packages: $holds" >&2; exit 1; }
  "$here/build.sh" -q -f "$here/$kind/Dockerfile" --build-arg "DEBIAN_IMAGE=$debian_image" \
    --build-arg "STANDS_IN_FOR=$upstream" --build-arg "HOLDS=$holds" -t "$name" "$here/$kind" >/dev/null
  "$engine" rmi "$packages" >/dev/null 2>&1 || true
  echo "built local stand-in: $name for $upstream ($holds)" >&2
}

ensure() {  # ensure KIND (python | nginx)
  local kind=$1 given upstream stand_in
  given=${kind^^}_IMAGE upstream=${kind^^}_UPSTREAM stand_in=${kind^^}_STAND_IN
  given=${!given:-} upstream=${!upstream} stand_in=${!stand_in}
  if [[ -z $given ]] && [[ -n $(stand_in_for "$upstream") ]]; then
    "$engine" rmi "$upstream" >/dev/null 2>&1 \
      && echo "untagged $upstream: a local stand-in, not the upstream image (stand-ins are $stand_in)" >&2
  fi
  if [[ -n $given ]]; then
    "$here/image-exists.sh" "$given" && { echo "base image present: $given (set by ${kind^^}_IMAGE)" >&2; return 0; }
    pull "$given" 2>/dev/null && { echo "pulled $given" >&2; return 0; }
    echo "error: cannot pull $given (set by ${kind^^}_IMAGE)" >&2; exit 1
  fi
  if [[ $mode != local ]] && "$here/image-exists.sh" "$upstream" && [[ -z $(stand_in_for "$upstream") ]]; then
    echo "base image present: $upstream (upstream)" >&2; return 0
  fi
  if [[ $mode != pull ]] && "$here/image-exists.sh" "$stand_in"; then
    local was
    was=$(stand_in_for "$stand_in")
    if [[ $was == "$upstream" ]]; then
      echo "base image present: $stand_in (local stand-in for $upstream)" >&2; return 0
    fi
    # The pin moved (images/upstream/Dockerfile): a stand-in labelled for the old one is rebuilt.
    echo "$stand_in stands in for $was, not $upstream: rebuilding it" >&2
  fi
  if [[ $mode != local ]]; then
    if pull "$upstream" 2>/dev/null; then echo "pulled $upstream" >&2; return 0; fi
    [[ $mode == pull ]] && { echo "error: cannot pull $upstream" >&2; exit 1; }
    echo "no registry answers for $upstream: building a local stand-in, $stand_in" >&2
  fi
  stand_in "$kind" "$stand_in" "$upstream"
}

ensure python
ensure nginx
