"""The model server: a WSGI app (one request pipeline, no web framework) run by uWSGI behind
Nginx (see docs/serving.md)."""
