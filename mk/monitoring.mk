# Monitoring: the chart's recording and alert rules (charts/model/templates/prometheusrule.yaml),
# their promtool unit tests, a real Prometheus scraping the real stack, and the drift demo.
# See docs/monitoring.md.

# Prometheus, promtool and Alertmanager from Debian (the packages' services are not started: no
# systemd here; the tests and the demo start their own servers on loopback).
.PHONY: monitoring-prereqs
monitoring-prereqs: ## install Prometheus, promtool and Alertmanager from Debian (needs root; else prints the command)
	scripts/ensure-debian-packages.sh prometheus prometheus-alertmanager

test-prereqs: monitoring-prereqs

# Where `make demo-drift` writes its plot and numbers; the model it serves (with its profile.json)
# and the data it sends (the training pipeline's splits: `make train` writes all three).
DEMO_DRIFT_DIR ?= out/demo-drift
DEMO_DRIFT_MODEL ?= training/model
DEMO_DRIFT_DATA ?= training/data/train.csv training/data/test.csv
# Features the demo shifts (space-separated); empty: the model's first two.
DEMO_DRIFT_SHIFT ?=

.PHONY: test-monitoring
test-monitoring: monitoring-prereqs serving-prereqs tools ## the monitoring tests only (chart rules, promtool, a real Prometheus and Alertmanager, the relay)
	pytest tests/deploy/test_monitoring_rules.py tests/serving/test_serving_prometheus.py tests/retraining/test_relay.py -q

.PHONY: demo-drift
demo-drift: monitoring-prereqs serving-prereqs tools ## stack + Prometheus: in-distribution then shifted traffic, the PSI table, the alerts, a PNG (out/demo-drift)
	@for f in $(DEMO_DRIFT_MODEL)/profile.json $(DEMO_DRIFT_DATA); do test -f "$$f" || { $(MAKE) train; break; }; done
	python -m devstack.drift_demo --model-dir "$(DEMO_DRIFT_MODEL)" --out "$(DEMO_DRIFT_DIR)" \
	  $(foreach f,$(DEMO_DRIFT_DATA),--data "$(f)") $(foreach f,$(DEMO_DRIFT_SHIFT),--shift "$(f)")
