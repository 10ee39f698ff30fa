# CI/CD: the GitHub Actions workflows (.github/workflows) and the promote scripts they run
# (python -m gitops.<command>). See docs/workflow.md.

# The gitops tests run the pinned kustomize (and kubectl) from .tools/bin.
test-prereqs: tools

.PHONY: workflows-check
workflows-check: venv tools ## validate the workflows and test the promote scripts (offline)
	pytest tests/workflows -q
