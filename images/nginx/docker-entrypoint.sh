#!/bin/sh
# Entry point of the Nginx stand-in, after upstream's: when starting nginx, render each
# /etc/nginx/templates/*.template with envsubst (defined variables only) into
# $NGINX_ENVSUBST_OUTPUT_DIR (default /etc/nginx/conf.d); then exec the command.
set -eu
if [ "${1:-}" = nginx ] || [ "${1:-}" = nginx-debug ]; then
  out=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
  vars=
  for var in $(env | cut -d= -f1); do vars="$vars\${$var} "; done
  for t in /etc/nginx/templates/*.template; do
    [ -f "$t" ] || continue
    name=$(basename "$t" .template)
    envsubst "$vars" < "$t" > "$out/$name"
  done
fi
exec "$@"
