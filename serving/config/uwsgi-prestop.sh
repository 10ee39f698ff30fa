#!/bin/sh
# The app container's preStop hook (charts/model; docs/serving.md#stopping-gracefully), also
# played by devstack's pod stop (the tests): return once Nginx has stopped, so that the SIGTERM
# the kubelet sends uWSGI next (its graceful shutdown) comes when no request can reach it any
# more. Nginx's own preStop (nginx-start.sh stop) writes nginx.stopped beside the uWSGI socket
# after its last request has been answered. Without that file (Nginx killed, or never there) the
# hook gives up after $MODELOPS_PRESTOP_WAIT seconds: uWSGI then still finishes what is in flight.
# Environment: MODELOPS_SOCKET (/run/modelops/uwsgi.sock), MODELOPS_PRESTOP_WAIT (25, below the
# pod's terminationGracePeriodSeconds; not UWSGI_*: uWSGI reads those as options).
set -eu
: "${MODELOPS_SOCKET:=/run/modelops/uwsgi.sock}"
: "${MODELOPS_PRESTOP_WAIT:=25}"
stopped="$(dirname "$MODELOPS_SOCKET")/nginx.stopped"
# tenths of a second, counted: no clock arithmetic in sh
left=$((MODELOPS_PRESTOP_WAIT * 10))
while [ ! -e "$stopped" ] && [ "$left" -gt 0 ]; do
    sleep 0.1
    left=$((left - 1))
done
