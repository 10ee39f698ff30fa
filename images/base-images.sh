#!/usr/bin/env bash
# The one place that decides which base images are used: the Python image serving/Dockerfile
# builds from and the Nginx image the pod runs beside the app. images/build-model-server.sh,
# images/build-base-images.sh, the pod runner (images/pod.py) and the tests all ask
# this script; nothing else picks a base image.
#
# For each of python and nginx, in this order:
#   1. PYTHON_IMAGE / NGINX_IMAGE set in the environment: that image, as given;
#   2. MODELOPS_BASE_IMAGES=pull: the upstream image; =local: the local stand-in;
#   3. (auto, the default) the upstream image when it is in the local store, else the local
#      stand-in when it is, else the upstream image (a build then pulls it).
# Upstream names are those of images/upstream/Dockerfile. Local stand-ins (images/build-base-images.sh)
# have their own names, localhost/modelops/base-python:<suite> and localhost/modelops/base-nginx:<suite>
# (suite: its DEBIAN_SUITE), and the labels
#   io.modelops.base.stand-in-for=<upstream name>   io.modelops.base.holds=<what it holds: python 3.11.2>
# An image under an upstream name that carries io.modelops.base.stand-in-for (or
# io.modelops.stand-in-for, the key of stand-ins that were built under the upstream names) is not
# the upstream image and is never taken for it.
#
# usage: images/base-images.sh              PYTHON_IMAGE=<name> and NGINX_IMAGE=<name>, one a line
#        images/base-images.sh --candidates  also PYTHON_UPSTREAM, PYTHON_STAND_IN, NGINX_UPSTREAM, ...
#        images/base-images.sh --describe    one line saying which base each is
#        images/base-images.sh --stand-in-for NAME  what the local image NAME stands in for ("": no stand-in)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# upstream STAGE: the image images/upstream/Dockerfile names in `FROM <image> AS <stage>`.
upstream() { sed -n "s/^FROM \([^ ]*\) AS $1\$/\1/p" "$here/upstream/Dockerfile"; }
suite=$(sed -n 's/^ARG DEBIAN_SUITE=//p' "$here/upstream/Dockerfile")
PYTHON_UPSTREAM=$(upstream python)
NGINX_UPSTREAM=$(upstream nginx)
PYTHON_STAND_IN=localhost/modelops/base-python:$suite
NGINX_STAND_IN=localhost/modelops/base-nginx:$suite
mode=${MODELOPS_BASE_IMAGES:-auto}
case $mode in
  auto | pull | local) ;;
  *) echo "error: MODELOPS_BASE_IMAGES must be auto, pull or local, not '$mode'" >&2; exit 2 ;;
esac

# label NAME KEY: the label's value ("" when the image or the label is missing).
label() {
  local value
  case ${engine:=$("$here/engine.sh")} in
    docker | podman) value=$("$engine" image inspect --format "{{index .Config.Labels \"$2\"}}" "$1" 2>/dev/null) || true ;;
    buildah) value=$(buildah inspect --type image --format "{{index .OCIv1.Config.Labels \"$2\"}}" "$1" 2>/dev/null) || true ;;
  esac
  [[ $value == "<no value>" ]] && value=
  echo "$value"
}
stand_in_for() {
  local for
  for=$(label "$1" io.modelops.base.stand-in-for)
  echo "${for:-$(label "$1" io.modelops.stand-in-for)}"
}
present() { "$here/image-exists.sh" "$1"; }
genuine() { present "$1" && [[ -z $(stand_in_for "$1") ]]; }

resolve() {  # resolve KIND: the name to use
  local given=${1}_IMAGE upstream=${1}_UPSTREAM stand_in=${1}_STAND_IN
  if [[ -n ${!given:-} ]]; then echo "${!given}"; return; fi
  case $mode in
    pull) echo "${!upstream}" ;;
    local) echo "${!stand_in}" ;;
    auto)
      if genuine "${!upstream}"; then echo "${!upstream}"
      elif present "${!stand_in}"; then echo "${!stand_in}"
      else echo "${!upstream}"; fi ;;
  esac
}

describe() {  # describe KIND NAME: "name (upstream)", "name (local stand-in for X, holds Y)", ...
  local given=${1}_IMAGE for
  for=$(stand_in_for "$2")
  if [[ -n $for ]]; then
    echo "$2 (local stand-in for $for, holds $(label "$2" io.modelops.base.holds))"
  elif [[ -n ${!given:-} ]]; then
    echo "$2 (set by $given)"
  elif present "$2"; then
    echo "$2 (upstream)"
  else
    echo "$2 (upstream, not in the local store)"
  fi
}

if [[ ${1:-} == --stand-in-for ]]; then
  [[ $# -eq 2 ]] || { echo "usage: images/base-images.sh --stand-in-for NAME" >&2; exit 2; }
  stand_in_for "$2"; exit 0
fi
python=$(resolve PYTHON)
nginx=$(resolve NGINX)
case ${1:-} in
  "") printf 'PYTHON_IMAGE=%s\nNGINX_IMAGE=%s\n' "$python" "$nginx" ;;
  --candidates)
    printf 'PYTHON_IMAGE=%s\nNGINX_IMAGE=%s\n' "$python" "$nginx"
    printf '%s=%s\n' PYTHON_UPSTREAM "$PYTHON_UPSTREAM" PYTHON_STAND_IN "$PYTHON_STAND_IN" \
      NGINX_UPSTREAM "$NGINX_UPSTREAM" NGINX_STAND_IN "$NGINX_STAND_IN" ;;
  --describe) echo "base images: python $(describe PYTHON "$python"); nginx $(describe NGINX "$nginx")" ;;
  *) echo "usage: images/base-images.sh [--candidates | --describe | --stand-in-for NAME]" >&2; exit 2 ;;
esac
