#!/usr/bin/env bash
# Print the Debian mirror URL this host's apt is configured with (deb822 .sources files first, then
# one-line sources.list), for the given suite's main archive (not the security archive).
#
# usage: images/debian-mirror.sh [APT_ETC]     (APT_ETC defaults to /etc/apt; tests pass a fixture)
set -euo pipefail
apt_etc=${1:-/etc/apt}
shopt -s nullglob
for f in "$apt_etc"/sources.list.d/*.sources; do
  # First URIs: of a stanza whose Suites: do not end in -security.
  url=$(awk '
    /^[[:space:]]*$/ { if (uri != "" && !sec) { print uri; exit } uri = ""; sec = 0; next }
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i ~ /-security$/) sec = 1 }
    END { if (uri != "" && !sec) print uri }' "$f" | head -n1)
  [[ -n $url ]] && { echo "$url"; exit 0; }
done
for f in "$apt_etc"/sources.list "$apt_etc"/sources.list.d/*.list; do
  [[ -f $f ]] || continue
  url=$(awk '$1 == "deb" && $0 !~ /-security/ { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; exit } }' "$f")
  [[ -n $url ]] && { echo "$url"; exit 0; }
done
echo "error: no Debian mirror configured in $apt_etc/sources.list.d/*.sources or $apt_etc/sources.list" >&2
exit 1
