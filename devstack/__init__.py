"""Local tooling around the model server that the image does not ship.

``devstack.stack`` runs Nginx + uWSGI as local processes with the repository's config files
(``make serve``, the tests, the benchmark); ``devstack.demo`` is ``make demo-serving``. The
container image copies ``serving/`` only (serving/Dockerfile, .dockerignore): nothing here is in
it, and nothing in ``serving/`` imports this package.
"""
