"""Relays with one defect each, served by the real uWSGI configuration in place of
``retraining.relay_wsgi:application`` (tests/retraining/relay_server.py's ``module``), so that
tests/retraining/test_relay_server.py shows each of its checks failing on the defect it guards
against. ``RELAY_DEFECT`` names the defect:

- ``no-auth``: the bearer token is never checked (every delivery is taken as Alertmanager's);
- ``group-key-only``: deliveries de-duplicated by their alert group alone, so a group's later
  notification with another set of alerts is lost.

The defects a configuration makes (no de-duplication, no body limit, one thread and a long socket
timeout) need no code: the test sets the relay's variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from retraining import relay


class NoAuth(relay.Relay):
    """Takes every delivery as if it carried the relay's token."""

    def alertmanager(self, environ: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        forged = {**environ, "HTTP_AUTHORIZATION": f"Bearer {self.config.relay_token}"}
        return super().alertmanager(forged)


def group_key_only(webhook: Mapping[str, Any], dispatch: Mapping[str, Any]) -> str:
    return str(webhook.get("groupKey", ""))


DEFECT = os.environ["RELAY_DEFECT"]
if DEFECT == "group-key-only":
    relay.delivery_key = group_key_only  # the module's function, as Relay.alertmanager calls it
elif DEFECT != "no-auth":
    raise SystemExit(f"RELAY_DEFECT must be no-auth or group-key-only, got {DEFECT!r}")
application = (NoAuth if DEFECT == "no-auth" else relay.Relay)(
    relay.Config.from_environ(os.environ)
)
