#!/bin/sh
# The Nginx container's command (docs/serving.md#container-contract), also used by `make serve`,
# the tests and the benchmark.
#   sh nginx-start.sh        render nginx.conf.template into $NGINX_PREFIX, exec nginx in the foreground
#   sh nginx-start.sh stop   (preStop) wait $NGINX_STOP_DELAY s, stop gracefully (SIGQUIT), wait for exit
# Environment: NGINX_LISTEN (8080), MODELOPS_SOCKET (/run/modelops/uwsgi.sock),
# NGINX_PREFIX (/tmp/nginx/), NGINX_STOP_DELAY (5), NGINX_GLOBALS (extra main-context directives).
set -eu
: "${NGINX_LISTEN:=8080}"
: "${MODELOPS_SOCKET:=/run/modelops/uwsgi.sock}"
: "${NGINX_PREFIX:=/tmp/nginx/}"
: "${NGINX_STOP_DELAY:=5}"
: "${NGINX_GLOBALS:=}"
export NGINX_LISTEN MODELOPS_SOCKET
prefix="${NGINX_PREFIX%/}/"
conf="${prefix}nginx.conf"

case "${1:-run}" in
run)
    case "$MODELOPS_SOCKET" in
    /*) ;;
    *) echo "nginx-start.sh: MODELOPS_SOCKET must be an absolute path, got '$MODELOPS_SOCKET'" >&2; exit 2 ;;
    esac
    mkdir -p "$prefix"
    # shellcheck disable=SC2016 # the variable list is for envsubst, not the shell
    envsubst '${NGINX_LISTEN} ${MODELOPS_SOCKET}' <"$(dirname "$0")/nginx.conf.template" >"$conf"
    exec nginx -p "$prefix" -e stderr -c "$conf" -g "daemon off; $NGINX_GLOBALS"
    ;;
stop)
    sleep "$NGINX_STOP_DELAY"
    [ -f "${prefix}nginx.pid" ] || exit 0
    kill -QUIT "$(cat "${prefix}nginx.pid")"
    # Nginx removes its pid file when the last worker has finished
    while [ -f "${prefix}nginx.pid" ]; do sleep 0.2; done
    ;;
*)
    echo "usage: nginx-start.sh [run|stop]" >&2
    exit 2
    ;;
esac
