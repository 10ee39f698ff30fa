# CI/CD: the GitHub Actions workflows (.github/workflows) and the promote scripts they run
# (scripts/promote-*). See docs/workflow.md.

# The promote tests run the pinned kustomize (and kubectl) from .tools/bin.
test-prereqs: tools

.PHONY: workflows-check
workflows-check: venv tools ## validate the workflows and test the promote scripts (offline)
	pytest tests/workflows -q
