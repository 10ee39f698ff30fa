"""The container images: build scripts and Dockerfiles, and the local pod runner
(``images.pod``, also run as ``python images/pod.py``), importable by the demo and the tests."""
