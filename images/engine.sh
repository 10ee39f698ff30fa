#!/usr/bin/env bash
# Print the container engine to build with: docker when a Docker engine answers, else podman,
# else buildah. A docker client without a running engine does not count.
#
# usage: images/engine.sh        (MODELOPS_ENGINE=docker|podman|buildah forces one)
set -euo pipefail
if [[ -n ${MODELOPS_ENGINE:-} ]]; then
  command -v "$MODELOPS_ENGINE" >/dev/null || { echo "error: MODELOPS_ENGINE=$MODELOPS_ENGINE is not installed" >&2; exit 1; }
  echo "$MODELOPS_ENGINE"; exit 0
fi
if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; exit 0; fi
for engine in podman buildah; do
  command -v "$engine" >/dev/null && { echo "$engine"; exit 0; }
done
echo "error: no container engine: install docker, or run 'make image-tools' (podman, buildah)" >&2
exit 1
