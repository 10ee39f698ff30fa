#!/usr/bin/env bash
# Build the model server image from serving/Dockerfile (context: the repository root) in three
# passes: pass 1 (--target model-fetch) fetches the model of MODEL_REF and records its provenance;
# pass 2 (--target sbom) makes the runtime's SBOM, whose sha256 is read; pass 3 builds the final
# image with that provenance and sha256 as build args (labels, MODELOPS_* env), and the Dockerfile
# re-checks both, so the labels can only name the model and the SBOM shipped. Later passes reuse
# the earlier ones' layers from the build cache.
#
# Outputs next to the image, in MODELOPS_IMAGE_OUT (default out/image in the repository):
#   sbom.cdx.json  the SBOM, copied out of the built image (the file the label io.modelops.sbom names)
#   digest         the image's digest, sha256:<hex> (podman: {{.Digest}}, buildah: FromImageDigest,
#                  docker: the image ID), also printed on stderr as "digest: sha256:..."
#
# usage: MODEL_REPO=<git url or path> MODEL_REF=<name#stage|name@vX.Y.Z> images/build-model-server.sh
# optional environment:
#   IMAGE                    tag (default localhost/modelops/model-server:<full git SHA of HEAD>)
#   PYTHON_IMAGE             base image (default: what images/base-images.sh resolves: the
#                            upstream image of images/upstream/Dockerfile, or its local stand-in)
#   MODELOPS_DVC_CONFIG      DVC config file merged into the model repo's (remote url, credentials):
#                            passed as the build secret dvc_config
#   MODELOPS_DVC_REMOTE_DIR  a local directory DVC remote (podman/buildah): bind-mounted read-only
#                            into the build and made the default remote through dvc_config
#   MODELOPS_GIT_CREDENTIALS git-credential-store file for MODEL_REPO: build secret git_credentials
#   MODELOPS_PIP_CONF        pip.conf for an internal PyPI mirror: build secret pip_conf
#   MODELOPS_BUILD_LOG       a file for the engine's output (its tail is shown if a pass fails);
#                            unset: the output goes to stderr
#   MODELOPS_SOURCE_URL      org.opencontainers.image.source (default: the origin remote's URL)
#   MODELOPS_FETCH_IMAGE     keep pass 1's image under this tag (default: removed)
#   MODELOPS_IMAGE_OUT       directory for the build outputs (default: out/image)
# A local MODEL_REPO path is bind-mounted read-only (podman/buildah). Says which base images it
# uses in one line on stderr (images/base-images.sh --describe). Prints the image name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# podman and buildah read the repository's settings (images/containers.conf), as make sets them.
export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
root=$(cd "$here/.." && pwd)
die() { echo "error: $*" >&2; exit 1; }
build() {
  if [[ -z ${MODELOPS_BUILD_LOG:-} ]]; then
    "$here/build.sh" "$@" >&2
  elif ! "$here/build.sh" "$@" >>"$MODELOPS_BUILD_LOG" 2>&1; then
    tail -n 40 "$MODELOPS_BUILD_LOG" >&2
    die "image build failed; the whole log is $MODELOPS_BUILD_LOG"
  fi
}
[[ -n ${MODEL_REPO:-} ]] || die "MODEL_REPO is not set (git URL or path of the model repository)"
[[ -n ${MODEL_REF:-} ]] || die "MODEL_REF is not set (GTO ref NAME#STAGE or NAME@vX.Y.Z, NAME: artifact.name of training/params.yaml)"
engine=$("$here/engine.sh")

git_commit=$(git -C "$root" rev-parse HEAD)
image=${IMAGE:-localhost/modelops/model-server:$git_commit}
created=$(TZ=UTC git -C "$root" log -1 --format=%cd --date=format-local:%Y-%m-%dT%H:%M:%SZ)
source_url=${MODELOPS_SOURCE_URL:-$(git -C "$root" remote get-url origin 2>/dev/null || echo unknown)}
source_url=$(sed -E 's#^([a-z+]+://)[^/@]+@#\1#' <<<"$source_url")  # never a user:token@ in a label
version=$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' "$root/pyproject.toml")

work=$(mktemp -d "${TMPDIR:-/tmp}/modelops-build.XXXXXX")
# Pass 1's image (the model and stage 1's tools) is removed afterwards, unless MODELOPS_FETCH_IMAGE
# names a tag to keep it under (the tests scan its layers for the secrets too).
suffix=$(basename "$work" | tr '[:upper:]' '[:lower:]' | tr -cd 'a-z0-9')
stage1=${MODELOPS_FETCH_IMAGE:-localhost/modelops/model-server-fetch:$suffix}
sbom_stage=localhost/modelops/model-server-sbom:$suffix
out=${MODELOPS_IMAGE_OUT:-$root/out/image}
cleanup() {
  rm -rf "$work"
  [[ -n ${MODELOPS_FETCH_IMAGE:-} ]] || "$engine" rmi "$stage1" >/dev/null 2>&1 || true
  "$engine" rmi "$sbom_stage" >/dev/null 2>&1 || true
}
trap cleanup EXIT

python_image=$("$here/base-images.sh" | sed -n 's/^PYTHON_IMAGE=//p')
args=(-f "$root/serving/Dockerfile" --build-arg "PYTHON_IMAGE=$python_image")
repo=$MODEL_REPO
if [[ -d $MODEL_REPO ]]; then
  [[ $engine == docker ]] && die "a local MODEL_REPO needs podman or buildah (bind mounts); use a git URL"
  args+=(-v "$(cd "$MODEL_REPO" && pwd):/mnt/model-repo:ro")
  repo=/mnt/model-repo
fi
args+=(--build-arg "MODEL_REPO=$repo" --build-arg "MODEL_REF=$MODEL_REF")
args+=(--build-arg "FETCH_NONCE=$(basename "$work")-$(date +%s%N)")  # see serving/Dockerfile
dvc_config=${MODELOPS_DVC_CONFIG:-}
if [[ -n ${MODELOPS_DVC_REMOTE_DIR:-} ]]; then
  [[ $engine == docker ]] && die "MODELOPS_DVC_REMOTE_DIR needs podman or buildah; use MODELOPS_DVC_CONFIG"
  [[ -d $MODELOPS_DVC_REMOTE_DIR ]] || die "MODELOPS_DVC_REMOTE_DIR $MODELOPS_DVC_REMOTE_DIR is not a directory"
  args+=(-v "$(cd "$MODELOPS_DVC_REMOTE_DIR" && pwd):/mnt/dvc-remote:ro")
  dvc_config=$work/dvc-config
  # The given config's remotes stay (credentials of others); its [core] gives way to the mount's.
  { [[ -n ${MODELOPS_DVC_CONFIG:-} ]] && awk '/^\[/ { skip = ($0 ~ /^\[core\]/) } !skip' "$MODELOPS_DVC_CONFIG"
    printf '[core]\n    remote = build-mounted\n['"'"'remote "build-mounted"'"'"']\n    url = /mnt/dvc-remote\n'
  } >"$dvc_config"
fi
[[ -n $dvc_config ]] && args+=(--secret "id=dvc_config,src=$dvc_config")
[[ -n ${MODELOPS_GIT_CREDENTIALS:-} ]] && args+=(--secret "id=git_credentials,src=$MODELOPS_GIT_CREDENTIALS")
[[ -n ${MODELOPS_PIP_CONF:-} ]] && args+=(--secret "id=pip_conf,src=$MODELOPS_PIP_CONF")

if [[ -n ${MODELOPS_BUILD_LOG:-} ]]; then
  mkdir -p "$(dirname "$MODELOPS_BUILD_LOG")" && : >"$MODELOPS_BUILD_LOG"
  echo "build log: $MODELOPS_BUILD_LOG" >&2
fi
"$here/base-images.sh" --describe >&2
echo "pass 1: fetch $MODEL_REF from $MODEL_REPO" >&2
build "${args[@]}" --target model-fetch -t "$stage1" "$root"
# read IMAGE FILE: the file's bytes, from the image (no network).
read_file() {
  case $engine in
    docker | podman) "$engine" run --rm --network none --entrypoint cat "$1" "$2" ;;
    buildah) ctr=$(buildah from "$1"); buildah run "$ctr" cat "$2"; buildah rm "$ctr" >/dev/null ;;
  esac
}
read_file "$stage1" /build/provenance.json >"$work/provenance.json"
field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/provenance.json" "$1"; }
args+=(--build-arg "MODEL_NAME=$(field name)" --build-arg "MODEL_VERSION=$(field version)"
  --build-arg "MODEL_STAGE=$(field stage)" --build-arg "MODEL_SHA256=$(field sha256)"
  --build-arg "GIT_COMMIT=$git_commit" --build-arg "SOURCE_URL=$source_url"
  --build-arg "IMAGE_VERSION=$version" --build-arg "CREATED=$created")

echo "pass 2: the SBOM of the runtime" >&2
build "${args[@]}" --target sbom -t "$sbom_stage" "$root"
read_file "$sbom_stage" /sbom/sbom.cdx.json >"$work/sbom.cdx.json"
sbom_sha256=$(sha256sum "$work/sbom.cdx.json" | cut -d' ' -f1)

echo "pass 3: $image" >&2
build "${args[@]}" --build-arg "SBOM_SHA256=$sbom_sha256" -t "$image" "$root"

mkdir -p "$out"
read_file "$image" /usr/share/modelops/sbom.cdx.json >"$out/sbom.cdx.json"
[[ $(sha256sum "$out/sbom.cdx.json" | cut -d' ' -f1) == "$sbom_sha256" ]] \
  || die "the SBOM in $image differs from the one its label names"
case $engine in
  podman) digest=$(podman image inspect --format '{{.Digest}}' "$image") ;;
  buildah) digest=$(buildah inspect --type image --format '{{.FromImageDigest}}' "$image") ;;
  docker) digest=$(docker image inspect --format '{{.Id}}' "$image") ;;
esac
echo "$digest" >"$out/digest"
echo "sbom: $out/sbom.cdx.json (sha256:$sbom_sha256)" >&2
echo "digest: $digest ($out/digest)" >&2
echo "$image"
