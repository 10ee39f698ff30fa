# Serving: the model behind Nginx -> uWSGI -> Flask (serving/), its tests and its benchmark.
# See docs/serving.md.

# The model `make serve` runs (the training pipeline's output) and where it listens.
SERVE_MODEL_DIR ?= training/model
SERVE_PORT ?= 8080
# The model and environment `make demo-serving` uses (written by `make demo-training`).
DEMO_MODEL_DIR ?= out/demo/model
DEMO_MODEL_ENV ?= out/demo/model.env
BENCH_DIR ?= out/bench

# Nginx (nginx-light has the uwsgi module), envsubst for the Nginx config template, wrk for bench.
.PHONY: serving-prereqs
serving-prereqs: venv ## install Nginx, envsubst and wrk from Debian (needs root; else prints the command)
	scripts/ensure-debian-packages.sh nginx-light gettext-base wrk

test-prereqs: serving-prereqs

.PHONY: serve
serve: serving-prereqs ## train if needed, then run Nginx + uWSGI on 127.0.0.1:8080 in the foreground (Ctrl-C stops)
	@test -f "$(SERVE_MODEL_DIR)/metadata.json" || $(MAKE) train
	python -m devstack.stack --model-dir "$(SERVE_MODEL_DIR)" --port "$(SERVE_PORT)"

.PHONY: demo-serving
demo-serving: serving-prereqs ## start the stack on the demo model, send a sample prediction, print it, stop
	@test -f "$(DEMO_MODEL_DIR)/metadata.json" || $(MAKE) demo-training
	python -m devstack.demo --model-dir "$(DEMO_MODEL_DIR)" --env-file "$(DEMO_MODEL_ENV)"

.PHONY: test-serving
test-serving: serving-prereqs ## the serving tests only
	pytest tests/serving -q

.PHONY: bench
bench: serving-prereqs ## benchmark the stack against three references with wrk (JSON + markdown in out/bench)
	@test -f "$(SERVE_MODEL_DIR)/metadata.json" || $(MAKE) train
	python -m bench.run --model-dir "$(SERVE_MODEL_DIR)" --out "$(BENCH_DIR)"
