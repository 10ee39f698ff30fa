#!/usr/bin/env bash
# Exit 0 when the image NAME exists in the local store of the engine images/engine.sh picks.
#
# usage: images/image-exists.sh NAME
set -euo pipefail
export CONTAINERS_CONF="${CONTAINERS_CONF:-$(cd "$(dirname "$0")" && pwd)/containers.conf}"
engine=$("$(dirname "$0")/engine.sh")
case $engine in
  docker | podman) "$engine" image inspect "$1" >/dev/null 2>&1 ;;
  buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
esac
