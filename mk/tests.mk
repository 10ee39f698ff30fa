# Test tiers (pytest markers, declared in pyproject.toml). `make test` (Makefile) runs all of them
# and is what CI runs; these run one tier each, with only the prerequisites that tier needs.
#
#   unit         no marker: in-process tests, helm/kubectl renders, loopback fakes. No root, no
#                podman, no servers; the everyday loop (a few minutes).
#   integration  real git/DVC/GTO repositories, checkov, the pinned Argo CD schemas, and the
#                loopback registry the promotion gates read build attestations from (two Debian
#                packages: root installs them once; the tests themselves need no root).
#   e2e          Nginx + uWSGI stacks, image builds and podman pods: Debian packages, so root.

.PHONY: test-unit
test-unit: venv tools ## the quick tier: no root, no podman, no servers (a few minutes)
	pytest -m "not integration and not e2e"

.PHONY: test-integration
test-integration: venv tools checkov training-tools registry-tools ## real git/DVC/GTO repositories, checkov, Argo CD schemas, a loopback registry
	pytest -m integration

.PHONY: test-e2e
test-e2e: test-prereqs ## Nginx/uWSGI stacks, the image and podman pods (installs Debian packages: root)
	pytest -m e2e
