"""The relay's WSGI entry point: ``retraining.relay_wsgi:application``, what uWSGI loads
(retraining/relay_uwsgi.ini). The configuration is read from the environment once, at import
(retraining/relay.py's docstring lists it); a missing or wrong one prints one line,
``error: ...``, and the import fails, so uWSGI (``need-app``) exits instead of serving.
"""

from __future__ import annotations

import os
import sys

from gitops.cli import ToolError
from retraining.relay import Config, Relay

try:
    application = Relay(Config.from_environ(os.environ))
except ToolError as error:
    print(f"error: {error}", file=sys.stderr, flush=True)
    raise SystemExit(1) from None
