"""The retraining loop: a drift alert (or a person) asks for a model trained on new data.

``retraining.relay`` is the service between Alertmanager and GitHub (its uWSGI entry point
``retraining.relay_wsgi``, configuration ``retraining/relay_uwsgi.ini``; it ships in the model
server image and runs as kustomize/monitoring/relay); ``retraining.retrain`` holds the steps of
.github/workflows/retrain.yml and the translation of an alert into GitHub's repository dispatch.
Both are commands (``python -m retraining.<command>``, docs/monitoring.md#retraining) that fail
the way the delivery tools do (gitops.cli, the one module of gitops they use). What they start
is an experiment pull request; the delivery flow (gitops/) takes it from there.
"""
