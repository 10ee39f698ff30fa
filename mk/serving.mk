# Serving: the model behind Nginx -> uWSGI -> the app (serving/), its tests and its benchmark.
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

test-prereqs: serving-prereqs mlserver

# MLServer with its scikit-learn runtime, make bench's Open Inference Protocol reference, in its
# own venv from its own lock (requirements/mlserver.txt): its pins conflict with the dev lock's.
# bench/mlserver.py runs it from there (bench.mlserver.VENV).
MLSERVER_VENV := .tools/mlserver-venv

$(MLSERVER_VENV)/.installed: requirements/mlserver.txt
	rm -rf $(MLSERVER_VENV)
	$(PYTHON) -m venv $(MLSERVER_VENV)
	$(MLSERVER_VENV)/bin/pip install -q --require-hashes -r requirements/mlserver.txt
	$(MLSERVER_VENV)/bin/mlserver --help >/dev/null
	touch $@

.PHONY: mlserver
mlserver: $(MLSERVER_VENV)/.installed ## install pinned MLServer + its scikit-learn runtime into its own venv (.tools/mlserver-venv)

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

# The deeper, shrinking fuzz run: every generator of tests/serving/test_serving_fuzz.py
# (schemathesis from serving/openapi.json, any request to every endpoint, mutated rows and
# tensors) with FUZZ_EXAMPLES generated requests each (per endpoint for the endpoint generator),
# against a real stack; fails on any 5xx or on an error without the JSON shape. About 67 minutes
# at 10,000. `make test` (and CI) runs it with 40 per generator, and the seeded 10,000 requests
# per body endpoint of tests/serving/test_serving_fuzz_at_scale.py (docs/serving.md#fuzzing).
FUZZ_EXAMPLES ?= 10000

.PHONY: fuzz
fuzz: serving-prereqs ## fuzz the real stack: FUZZ_EXAMPLES (10,000) generated requests per endpoint and generator, no 5xx
	MODELOPS_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) pytest tests/serving/test_serving_fuzz.py -q \
	  -p no:cacheprovider -o timeout=0 --durations=5

.PHONY: bench
bench: serving-prereqs mlserver ## benchmark the stack per estimator family against MLServer, FastAPI, a floor and a ceiling with wrk; scores the goals (JSON + markdown in out/bench)
	python -m bench.run --out "$(BENCH_DIR)"
