#!/usr/bin/env bash
# Push the model server image IMAGE to its registry with the engine images/engine.sh picks (docker,
# podman or buildah), once, and print what the deploy pull request pins, as key=value lines for
# $GITHUB_OUTPUT:
#   image_digest=sha256:<hex>   the manifest digest the registry stored: what the overlays pin
#   model_sha256=<hex>          the image's label io.modelops.model.sha256 (the model.pkl it ships,
#                               which its build checked against the model it fetched)
# The engine's own output goes to stderr. Anything else than a digest and a sha256: one line, exit 1.
#
# usage: images/push-model-server.sh IMAGE
#   MODELOPS_REGISTRY_TLS_VERIFY=false   podman/buildah: a plain-HTTP registry (a loopback one)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# podman and buildah read the repository's settings (images/containers.conf), as make sets them.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
image=${1:?usage: images/push-model-server.sh IMAGE}
die() { echo "error: $*" >&2; exit 1; }
engine=$("$here/engine.sh")
label=io.modelops.model.sha256
case $engine in
  docker)
    docker push "$image" >&2
    # The digest of this repository: an image pushed to several registries has one for each.
    digest=$(docker image inspect --format '{{ range .RepoDigests }}{{ println . }}{{ end }}' "$image" \
      | sed -n "s#^${image%:*}@##p" | head -n 1)
    sha256=$(docker image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image") ;;
  podman | buildah)
    out=$(mktemp -d)
    trap 'rm -rf "$out"' EXIT
    "$engine" push --tls-verify="${MODELOPS_REGISTRY_TLS_VERIFY:-true}" --digestfile "$out/digest" \
      "$image" >&2
    digest=$(cat "$out/digest")
    if [[ $engine == podman ]]; then
      sha256=$(podman image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image")
    else
      sha256=$(buildah inspect --type image --format "{{ index .OCIv1.Config.Labels \"$label\" }}" "$image")
    fi ;;
esac
[[ $digest =~ ^sha256:[0-9a-f]{64}$ ]] || die "the registry gave $image no manifest digest (got '$digest')"
[[ $sha256 =~ ^[0-9a-f]{64}$ ]] || die "$image has no label $label with a sha256 (got '$sha256')"
echo "image_digest=$digest"
echo "model_sha256=$sha256"
