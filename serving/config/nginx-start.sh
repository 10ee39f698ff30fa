#!/bin/sh
# The Nginx container's command (docs/serving.md#container-contract), also used by `make serve`,
# the tests and the benchmark.
#   sh nginx-start.sh        render nginx.conf.template into $NGINX_PREFIX, exec nginx in the
#                            foreground, holding a lock on nginx.lock beside the uWSGI socket for
#                            as long as any Nginx process lives (uwsgi-prestop.sh, the app
#                            container's preStop, waits for it: uWSGI stops only once nothing can
#                            reach it; the kernel drops the lock however Nginx ends)
#   sh nginx-start.sh stop   (preStop) drain: mark $NGINX_PREFIX/draining (Nginx's readiness answers
#                            503, every answer closes its connection), wait $NGINX_STOP_DELAY s for
#                            the endpoints to drop the pod, stop gracefully (SIGQUIT: in-flight
#                            requests finish), wait for Nginx to exit
# Environment: NGINX_LISTEN (8080), MODELOPS_SOCKET (/run/modelops/uwsgi.sock),
# NGINX_PREFIX (/tmp/nginx/), NGINX_STOP_DELAY (5), NGINX_GLOBALS (extra main-context directives),
# NGINX_CLIENT_TIMEOUT (10s: client_header_timeout, client_body_timeout) and NGINX_UWSGI_TIMEOUT
# (30s: uwsgi_send_timeout, uwsgi_read_timeout), Nginx time values; the pod sets neither, the
# tests shorten them.
set -eu
: "${NGINX_LISTEN:=8080}"
: "${MODELOPS_SOCKET:=/run/modelops/uwsgi.sock}"
: "${NGINX_PREFIX:=/tmp/nginx/}"
: "${NGINX_STOP_DELAY:=5}"
: "${NGINX_GLOBALS:=}"
: "${NGINX_CLIENT_TIMEOUT:=10s}"
: "${NGINX_UWSGI_TIMEOUT:=30s}"
NGINX_PREFIX="${NGINX_PREFIX%/}/"
export NGINX_LISTEN MODELOPS_SOCKET NGINX_PREFIX NGINX_CLIENT_TIMEOUT NGINX_UWSGI_TIMEOUT
prefix="$NGINX_PREFIX"
conf="${prefix}nginx.conf"
lock="$(dirname "$MODELOPS_SOCKET")/nginx.lock"

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
    rm -f "${prefix}draining"
    # fd 9 is inherited by the Nginx master and its workers: the lock lasts as long as they do
    exec 9>"$lock"
    if ! flock -n 9; then
        echo "nginx-start.sh: $lock is held: another Nginx runs beside this socket" >&2
        exit 1
    fi
    # shellcheck disable=SC2016 # the variable list is for envsubst, not the shell
    envsubst '${NGINX_LISTEN} ${MODELOPS_SOCKET} ${NGINX_PREFIX} ${NGINX_CLIENT_TIMEOUT} ${NGINX_UWSGI_TIMEOUT}' \
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
    ;;
*)
    echo "usage: nginx-start.sh [run|stop]" >&2
    exit 2
    ;;
esac
