# CI/CD: the GitHub Actions workflows (.github/workflows) and the promote scripts they run
# (python -m gitops.<command>). See docs/workflow.md.

# The gitops tests run the pinned kustomize (and kubectl) from .tools/bin; the act walks borrow
# .venv and .tools (tests/workflows/act/README.md).
test-prereqs: tools

# The loopback container registry (images/registry.py) the act walks and the promotion tests
# push to and read build attestations back from: mk/image.mk, registry-tools.
test-prereqs: registry-tools

.PHONY: workflows-check
workflows-check: venv tools ## validate the workflows and test the promote scripts (offline)
	pytest tests/workflows -q

# `make act`: run the unmodified workflow files with nektos/act (host mode, no container engine)
# in a sandbox clone of HEAD under ACT_SANDBOX with a bare origin; the stand-ins for GitHub are
# in tests/workflows/act/. The tests build the same command line (tests/workflows/act_harness.py).
#   make act EVENT=push BRANCH=main WORKFLOW=promote.yml ACT_VARS=IMAGE_REGISTRY=127.0.0.1:5000/acme
#   make act EVENT=pull_request_target WORKFLOW=pr-guard.yml PAYLOAD=event.json PR_FILES=changed.txt
EVENT ?= push
WORKFLOW ?=
JOB ?=
BRANCH ?= main
PAYLOAD ?=
PR_FILES ?=
# Space-separated NAME=VALUE pairs: repository variables (vars.NAME) and secrets (secrets.NAME).
ACT_VARS ?=
ACT_SECRETS ?=
ACT_SANDBOX ?= out/act

.PHONY: act
act: venv tools ## run a workflow with act in a sandbox clone (EVENT, WORKFLOW, JOB, BRANCH, PAYLOAD, PR_FILES, ACT_VARS, ACT_SECRETS)
	python tests/workflows/act_harness.py --event '$(EVENT)' --branch '$(BRANCH)' \
	  --sandbox '$(ACT_SANDBOX)' \
	  $(if $(WORKFLOW),--workflow '$(WORKFLOW)') $(if $(JOB),--job '$(JOB)') \
	  $(if $(PAYLOAD),--payload '$(PAYLOAD)') $(if $(PR_FILES),--pr-files '$(PR_FILES)') \
	  $(foreach v,$(ACT_VARS),--var '$(v)') $(foreach s,$(ACT_SECRETS),--secret '$(s)')
