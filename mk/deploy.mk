# Deploy the GitOps way: the Helm chart (charts/model), its rendered manifests (kustomize/base),
# the per-environment overlays (kustomize/overlays/*), Argo CD (argocd/). See docs/deployment.md.

# checkov in its own virtualenv: its dependencies conflict with the project's pins.
CHECKOV_VENV := .tools/checkov-venv
# The Argo CD CRD schemas are pinned by sha256 in scripts/argocd-schemas.lock and fetched into
# .cache/crd-schemas by scripts/crd_schemas.py. Offline, set MODELOPS_ARGOCD_SCHEMAS to a
# directory holding copies of them (verified against the same sha256s); it has no default. The
# Prometheus Operator's (scripts/prometheus-operator-schemas.lock) are committed copies.

$(CHECKOV_VENV)/.installed: requirements/checkov.txt
	rm -rf $(CHECKOV_VENV)
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --require-hashes -r requirements/checkov.txt
	$(CHECKOV_VENV)/bin/checkov --version >/dev/null
	touch $@

.PHONY: checkov
checkov: $(CHECKOV_VENV)/.installed ## install pinned checkov into its own venv (.tools/checkov-venv)

# The pod smoke test plays the dev overlay with podman, whose pods need catatonit (the infra
# container's init), which podman only recommends: not installed with --no-install-recommends.
.PHONY: deploy-smoke-prereqs
deploy-smoke-prereqs: image-tools images-base ## install what the pod smoke test needs (catatonit, base images)
	scripts/ensure-debian-packages.sh catatonit

test-prereqs: tools checkov deploy-smoke-prereqs

.PHONY: render
render: venv tools ## write the artifact name (training/params.yaml) into the chart values and AppProject; re-render kustomize/base and kustomize/monitoring/<env> from charts/model (helm template), the chart README, and rendered/<env> present here
	python scripts/render-artifact.py
	python scripts/render-base.py
	python scripts/render-chart-readme.py
	python -m gitops.rendered

.PHONY: validate
validate: venv tools checkov ## offline checks: helm lint, render drift, Kubernetes 1.35-1.37 and Argo CD schemas, checkov
	helm lint --strict charts/model
	$(MAKE) validate-scenarios
	python scripts/render-artifact.py --check
	python scripts/render-base.py --check
	python scripts/render-chart-readme.py --check
	python -m gitops.rendered --check
	python scripts/validate-manifests.py
	python scripts/validate-policies.py

# Each render scenario of the chart: helm lint, then its render piped (read once) into the
# Kubernetes and Prometheus Operator schema checks; pipefail (.SHELLFLAGS) fails on a helm error.
# CHART: the chart to check (tests point it at a broken copy).
CHART ?= charts/model
.PHONY: validate-scenarios
validate-scenarios: venv tools ## helm lint and schema-check each render scenario charts/model/ci/*-values.yaml
	for values in $(CHART)/ci/*-values.yaml; do \
	  echo "scenario $$values"; \
	  helm lint --strict --quiet $(CHART) -f "$$values"; \
	  helm template model $(CHART) -f "$$values" | python scripts/validate-manifests.py --files /dev/stdin; \
	done

.PHONY: test-deploy
test-deploy: test-prereqs ## the deployment tests only (chart, overlays, Argo CD, validation, pod smoke test)
	pytest tests/deploy -q

.PHONY: demo-deploy
demo-deploy: image tools deploy-smoke-prereqs ## run the dev overlay's rendered pod with podman (image from make image), predict once
	python images/pod.py demo --env dev --image '$(IMAGE)'
