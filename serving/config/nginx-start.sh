#!/bin/sh
# The Nginx container's command (docs/serving.md#container-contract), also used by `make serve`,
# the tests and the benchmark.
#   sh nginx-start.sh        render nginx.conf.template into $NGINX_PREFIX, exec nginx in the foreground
#   sh nginx-start.sh stop   (preStop) drain: mark $NGINX_PREFIX/draining (Nginx's readiness answers
#                            503, every answer closes its connection), wait $NGINX_STOP_DELAY s for
#                            the endpoints to drop the pod, stop gracefully (SIGQUIT: in-flight
#                            requests finish), wait for Nginx to exit, then tell the app container
#                            (the file nginx.stopped beside the uWSGI socket: uwsgi-prestop.sh
#                            waits for it, so uWSGI stops only once nothing can reach it)
# Environment: NGINX_LISTEN (8080), MODELOPS_SOCKET (/run/modelops/uwsgi.sock),
# NGINX_PREFIX (/tmp/nginx/), NGINX_STOP_DELAY (5), NGINX_GLOBALS (extra main-context directives).
set -eu
: "${NGINX_LISTEN:=8080}"
: "${MODELOPS_SOCKET:=/run/modelops/uwsgi.sock}"
: "${NGINX_PREFIX:=/tmp/nginx/}"
: "${NGINX_STOP_DELAY:=5}"
: "${NGINX_GLOBALS:=}"
NGINX_PREFIX="${NGINX_PREFIX%/}/"
export NGINX_LISTEN MODELOPS_SOCKET NGINX_PREFIX
prefix="$NGINX_PREFIX"
conf="${prefix}nginx.conf"
stopped="$(dirname "$MODELOPS_SOCKET")/nginx.stopped"

case "${1:-run}" in
run)
    case "$MODELOPS_SOCKET" in
    /*) ;;
    *) echo "nginx-start.sh: MODELOPS_SOCKET must be an absolute path, got '$MODELOPS_SOCKET'" >&2; exit 2 ;;
    esac
    case "$NGINX_PREFIX" in
    /*) ;;
    *) echo "nginx-start.sh: NGINX_PREFIX must be an absolute path, got '$NGINX_PREFIX'" >&2; exit 2 ;;
    esac
    mkdir -p "$prefix"
    # a restarted container starts serving, not draining
    rm -f "${prefix}draining" "$stopped"
    # shellcheck disable=SC2016 # the variable list is for envsubst, not the shell
    envsubst '${NGINX_LISTEN} ${MODELOPS_SOCKET} ${NGINX_PREFIX}' \
        <"$(dirname "$0")/nginx.conf.template" >"$conf"
    exec nginx -p "$prefix" -e stderr -c "$conf" -g "daemon off; $NGINX_GLOBALS"
    ;;
stop)
    [ -d "$prefix" ] && : >"${prefix}draining"
    sleep "$NGINX_STOP_DELAY"
    if [ -f "${prefix}nginx.pid" ]; then
        kill -QUIT "$(cat "${prefix}nginx.pid")" || true
        # Nginx removes its pid file when the last worker has finished
        while [ -f "${prefix}nginx.pid" ]; do sleep 0.1; done
    fi
    : >"$stopped"
    ;;
*)
    echo "usage: nginx-start.sh [run|stop]" >&2
    exit 2
    ;;
esac
