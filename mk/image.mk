# The container image: serving/Dockerfile built with docker, podman or buildah; local
# stand-ins for the upstream base images where no registry answers. See docs/image.md.

# podman and buildah read the repository's settings (runc, cgroupfs, file events, ulimits):
# nothing needs configuring in /etc/containers on a fresh machine.
export CONTAINERS_CONF ?= $(CURDIR)/images/containers.conf

# What `make image` builds from: by default the demo sandbox of `make demo-training` (its bare
# origin, its local DVC remote, the dev stage of the artifact training/params.yaml names). Override
# for a real build, e.g.
#   make image MODEL_REPO=https://git.example/ml.git MODEL_REF=NAME#staging \
#              MODELOPS_DVC_CONFIG=path/to/dvc-config
DEMO_DIR ?= out/demo
# Expanded when the recipe runs, after the venv prerequisite is made.
MODEL_REF ?= $(shell $(BIN)/python -m training.params artifact.name)\#dev
IMAGE_TAG = $(shell git rev-parse HEAD)
IMAGE ?= localhost/modelops/model-server:$(IMAGE_TAG)
# A file for the image build's output (`make demo` sets one); empty: the output is shown.
BUILD_LOG ?=

.PHONY: image-tools
image-tools: ## install podman, buildah, runc and debootstrap (Debian packages)
	scripts/ensure-debian-packages.sh podman buildah runc debootstrap

.PHONY: registry-tools
registry-tools: ## install docker-registry and skopeo (Debian packages): the loopback registry images/registry.py starts
	scripts/ensure-debian-packages.sh docker-registry skopeo

.PHONY: images-base
images-base: image-tools ## pull the pinned base images, or build local stand-ins under their own names (debootstrap)
	images/build-base-images.sh

.PHONY: image
image: images-base venv ## build the model server image localhost/modelops/model-server:<git sha>
	@if [[ -z "$${MODEL_REPO:-}" ]]; then \
	  [[ -d "$(DEMO_DIR)/origin.git" ]] || $(MAKE) demo-training; \
	  export MODEL_REPO="$(DEMO_DIR)/origin.git" MODELOPS_DVC_REMOTE_DIR="$(DEMO_DIR)/dvc-remote"; \
	fi; \
	$(if $(BUILD_LOG),MODELOPS_BUILD_LOG='$(BUILD_LOG)') MODEL_REF='$(MODEL_REF)' IMAGE='$(IMAGE)' \
	  images/build-model-server.sh

# The pod is the dev overlay's rendered Deployment (images/pod.py, the one local pod runner): it
# needs kubectl (tools) and catatonit for podman's infra container (deploy-smoke-prereqs).
.PHONY: demo-image
demo-image: image tools deploy-smoke-prereqs ## build the image, run it in the dev overlay's pod beside the Nginx sidecar, send a prediction
	python images/pod.py demo --env dev --image '$(IMAGE)'

# The whole flow in the demo sandbox (gitops/demo.py): two releases, each image built once, through
# dev, staging and prod by the promotion tools; prod rolled back; a table of what runs where.
# MONITORING=on turns monitoring on in every overlay first (docs/monitoring.md, "Turning them on").
# Each image is pushed to a loopback registry and signed there, as promote.yml does (registry-tools).
MONITORING ?= off
.PHONY: demo-gitops
demo-gitops: images-base registry-tools tools deploy-smoke-prereqs venv ## in make demo-training's sandbox: build once, deploy, promote, roll back (podman pods; MONITORING=on)
	@[[ -d "$(DEMO_DIR)/origin.git" ]] || $(MAKE) demo-training
	python -m gitops.demo --sandbox '$(DEMO_DIR)' --monitoring '$(MONITORING)'

test-prereqs: images-base tools deploy-smoke-prereqs
