# Training: the DVC pipeline (training/dvc.yaml), its local default remote, the PR report and the
# training part of the demo. See docs/training.md.

# The DVC remote make sets up on a machine with no cloud account: a git-ignored directory of this
# clone (.cache/ is never committed and DVC does not track it). A team configures its shared remote
# instead (docs/training.md).
DVC_REMOTE_DIR ?= .cache/dvc-remote
# The revision `make report` compares the workspace against, and where it writes the report.
REPORT_BASE ?= main
REPORT_DIR ?= out/report
# Set when the report travels without its PNGs (CI: a pull-request comment, the PNGs in the run's
# artifact): the artifact's name, and the URL of the page that has it. report.md then lists the
# plot files instead of linking them (training/report.py).
REPORT_ARTIFACT ?=
REPORT_PLOTS_URL ?=
DEMO_DIR ?= out/demo

.PHONY: dvc-remote
dvc-remote: venv ## make a local directory (DVC_REMOTE_DIR) the default DVC remote unless one is set
	@if current=$$(dvc remote default 2>/dev/null) && [ -n "$$current" ] && [ "$$current" != local ]; then \
	  echo "dvc-remote: keeping the configured default remote '$$current'"; \
	else \
	  mkdir -p "$(DVC_REMOTE_DIR)"; \
	  dvc remote add --local --force --default local "$(abspath $(DVC_REMOTE_DIR))"; \
	  echo "dvc-remote: default remote 'local' -> $(abspath $(DVC_REMOTE_DIR)) (.dvc/config.local)"; \
	fi

.PHONY: training-data
training-data: venv ## write each missing bundled raw data file (training/data/*.csv) byte for byte, checked against its .dvc
	python -m training.bundled restore

.PHONY: train
train: dvc-remote training-data ## run the training pipeline (dvc repro) and push raw data, splits and model to the DVC remote
	dvc repro training/dvc.yaml
	dvc push -q
	dvc metrics show --md

.PHONY: families-doc
families-doc: venv ## rewrite the estimator families' table in docs/training.md from training/families/
	python -m training.familydocs

.PHONY: report
report: venv ## write the PR report (params/metrics diff vs REPORT_BASE, PNG plots) to REPORT_DIR
	python -m training.report --base "$(REPORT_BASE)" --out "$(REPORT_DIR)" \
	  $(if $(REPORT_ARTIFACT),--plots-artifact "$(REPORT_ARTIFACT)") \
	  $(if $(REPORT_PLOTS_URL),--plots-url "$(REPORT_PLOTS_URL)")

.PHONY: demo-training
demo-training: venv ## train, register and assign dev in a sandbox clone under out/demo (committed HEAD only)
	python -m training.demo --repo . --out "$(DEMO_DIR)"

.PHONY: training-tools
training-tools: ## the tools the training tests need besides .venv (git, from Debian)
	scripts/ensure-debian-packages.sh git

test-prereqs: training-tools
