#!/usr/bin/env bash
# Build an image with whichever engine images/engine.sh picks, with the flags each engine needs:
#   docker          BuildKit (DOCKER_BUILDKIT=1), which provides RUN --mount=type=secret
#   podman/buildah  --isolation chroot --network host --layers (no nested namespaces or bridge here);
#                   the host's CA bundle is bind-mounted for the build only (MODELOPS_BUILD_CA,
#                   default /etc/ssl/certs/ca-certificates.crt when it exists, empty to disable),
#                   so pip trusts a TLS-intercepting proxy; the image keeps its own bundle.
# Extra arguments are passed to the engine's build command unchanged (-t, -f, --build-arg,
# --secret, --target, and for podman/buildah -v); the last one is the context directory.
#
# usage: images/build.sh [BUILD ARGS...] CONTEXT
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# podman and buildah read the repository's settings (images/containers.conf), as make sets them.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
engine=$("$here/engine.sh")
ca=${MODELOPS_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}
case $engine in
  docker)
    DOCKER_BUILDKIT=1 exec docker build "$@" ;;
  podman | buildah)
    extra=(--isolation chroot --network host --layers)
    [[ -n $ca && -f $ca ]] && extra+=(-v "$ca:/etc/ssl/certs/ca-certificates.crt:ro")
    [[ $engine == buildah ]] && exec buildah bud "${extra[@]}" "$@"
    exec podman build "${extra[@]}" "$@" ;;
esac
