#!/usr/bin/env bash
# Make sure the Debian packages named as arguments are installed; install the missing ones.
#
# usage: scripts/ensure-debian-packages.sh PACKAGE...
#
# Idempotent: packages already installed are left alone, and nothing runs when none is missing.
# Installing needs root; as another user it prints the exact command to run and exits 1.
set -euo pipefail
(( $# )) || { echo "usage: $0 PACKAGE..." >&2; exit 2; }

missing=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$pkg")
done
(( ${#missing[@]} )) || exit 0

cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [[ $(id -u) -ne 0 ]]; then
  echo "error: missing Debian packages: ${missing[*]}; as root run: $cmd" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
