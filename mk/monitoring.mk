# Monitoring: the chart's recording and alert rules (charts/model/templates/prometheusrule.yaml),
# their promtool unit tests, a real Prometheus scraping the real stack, and the drift demo.
# See docs/monitoring.md.

# Prometheus and promtool from Debian (the package's service is not started: no systemd here; the
# tests and the demo start their own server on loopback).
.PHONY: monitoring-prereqs
monitoring-prereqs: ## install Prometheus and promtool from Debian (needs root; else prints the command)
	scripts/ensure-debian-packages.sh prometheus

test-prereqs: monitoring-prereqs

# Where `make demo-drift` writes its table, alert states and plot.
DEMO_DRIFT_DIR ?= out/demo-drift

.PHONY: test-monitoring
test-monitoring: monitoring-prereqs serving-prereqs tools ## the monitoring tests only (chart rules, promtool, a real Prometheus)
	pytest tests/deploy/test_monitoring_rules.py tests/serving/test_serving_prometheus.py -q

.PHONY: demo-drift
demo-drift: monitoring-prereqs serving-prereqs tools ## stack + Prometheus: in-distribution then shifted traffic, the PSI table, the alerts, a PNG (out/demo-drift)
	python -m devstack.drift_demo --out "$(DEMO_DRIFT_DIR)"
