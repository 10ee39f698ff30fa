#!/bin/sh
# The app container's preStop hook (charts/model; docs/serving.md#stopping-gracefully), also
# played by devstack's pod stop (the tests): return once Nginx has stopped, so that the SIGTERM
# the kubelet sends uWSGI next (its graceful shutdown) comes when no request can reach it any
# more. Nginx (nginx-start.sh) holds a lock on nginx.lock beside the uWSGI socket, in the
# directory both containers share, for as long as any of its processes lives; this hook waits
# until it can take that lock. No lock file: no Nginx ever ran here, nothing to wait for. Nginx
# still running after $MODELOPS_PRESTOP_WAIT seconds: one line on stderr, and uWSGI stops anyway
# (it still finishes what is in flight).
# Environment: MODELOPS_SOCKET (/run/modelops/uwsgi.sock), MODELOPS_PRESTOP_WAIT (25, below the
# pod's terminationGracePeriodSeconds; not UWSGI_*: uWSGI reads those as options).
set -eu
: "${MODELOPS_SOCKET:=/run/modelops/uwsgi.sock}"
: "${MODELOPS_PRESTOP_WAIT:=25}"
lock="$(dirname "$MODELOPS_SOCKET")/nginx.lock"
[ -e "$lock" ] || exit 0
if ! flock -w "$MODELOPS_PRESTOP_WAIT" "$lock" true; then
    echo "uwsgi-prestop.sh: Nginx still runs after ${MODELOPS_PRESTOP_WAIT} s; uWSGI stops anyway" >&2
fi
