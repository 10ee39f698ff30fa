#!/usr/bin/env bash
# Push the model server image IMAGE to its registry with the engine images/engine.sh picks (docker,
# podman or buildah), once, and print what the deploy pull request pins, as key=value lines for
# $GITHUB_OUTPUT:
#   image_digest=sha256:<hex>   the manifest digest the registry stored: what the overlays pin
#   model_sha256=<hex>          the image's label io.modelops.model.sha256 (the model.pkl it ships,
#                               which its build checked against the model it fetched)
# The engine's own output goes to stderr. Anything else than a digest and a sha256: one line, exit 1.
#
# With --pushed it builds and pushes nothing: when the registry already holds IMAGE (a re-run for a
# commit whose image was pushed), it prints the same two lines, read from the registry with skopeo,
# and exits 0; when it does not, it prints nothing and exits 3. So an image is pushed once.
#
# usage: images/push-model-server.sh [--pushed] IMAGE
#   MODELOPS_REGISTRY_TLS_VERIFY=false   a plain-HTTP registry (a loopback one)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# podman and buildah read the repository's settings (images/containers.conf), as make sets them.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
die() { echo "error: $*" >&2; exit 1; }
label=io.modelops.model.sha256
tls=${MODELOPS_REGISTRY_TLS_VERIFY:-true}
report() {  # report DIGEST SHA256: check both, print them
  [[ $1 =~ ^sha256:[0-9a-f]{64}$ ]] || die "the registry gave $image no manifest digest (got '$1')"
  [[ $2 =~ ^[0-9a-f]{64}$ ]] || die "$image has no label $label with a sha256 (got '$2')"
  echo "image_digest=$1"
  echo "model_sha256=$2"
}
if [[ ${1:-} == --pushed ]]; then
  image=${2:?usage: images/push-model-server.sh --pushed IMAGE}
  command -v skopeo >/dev/null || die "--pushed needs skopeo (GitHub's runners have it; make registry-tools)"
  inspected=$(skopeo inspect --tls-verify="$tls" "docker://$image" 2>/dev/null) || exit 3
  read -r digest sha256 < <(python3 -c 'import json, sys; i = json.load(sys.stdin)
print(i["Digest"], (i.get("Labels") or {}).get(sys.argv[1], ""))' "$label" <<<"$inspected")
  report "$digest" "$sha256"
  exit 0
fi
image=${1:?usage: images/push-model-server.sh [--pushed] IMAGE}
engine=$("$here/engine.sh")
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
    "$engine" push --tls-verify="$tls" --digestfile "$out/digest" \
      "$image" >&2
    digest=$(cat "$out/digest")
    if [[ $engine == podman ]]; then
      sha256=$(podman image inspect --format "{{ index .Config.Labels \"$label\" }}" "$image")
    else
      sha256=$(buildah inspect --type image --format "{{ index .OCIv1.Config.Labels \"$label\" }}" "$image")
    fi ;;
esac
report "$digest" "$sha256"
