"""The model server: a Flask app run by uWSGI behind Nginx (see docs/serving.md)."""
