# The README's two commands are `make up` (the demo) and `make test` (everything CI runs).
CACHE ?= $(HOME)/.cache/chatprovider
VENV  ?= $(CACHE)/venv
BIN   := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup setup-demo up test lint typecheck unit integration crds check-crds manifests check-manifests bench bench-smoke image

setup:            ## install everything `make test` needs (idempotent; caches under ~/.cache/chatprovider)
	CHATPROVIDER_CACHE=$(CACHE) CHATPROVIDER_VENV=$(VENV) bash scripts/setup.sh

setup-demo:       ## install only what `make up` needs: Python env, control plane, llama-server
	CHATPROVIDER_CACHE=$(CACHE) CHATPROVIDER_VENV=$(VENV) bash scripts/setup.sh --demo

up: setup-demo    ## run the local control plane, the operator, the relay and a real model
	$(BIN)/chatprovider up $(UP_ARGS)

lint:
	$(BIN)/ruff check operator tools tests bench
	$(BIN)/lint-imports

typecheck:
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

integration: setup
	$(BIN)/pytest tests/integration -q $(PYTEST_ARGS)

test: setup lint typecheck   ## everything: lint, types, unit and integration tests
	$(BIN)/pytest -q --junitxml=$(CACHE)/junit.xml $(PYTEST_ARGS)

crds:             ## regenerate crds/ from the pydantic models
	$(BIN)/python -m chatprovider_tools.generators.crd

check-crds:
	$(BIN)/python -m chatprovider_tools.generators.crd --check

bench: setup      ## relay vs LiteLLM vs nginx, and the operator (~15 min; writes BENCHMARKS.md, docs/bench/*.png)
	bash bench/run.sh $(BENCH_ARGS)

bench-smoke: setup  ## every benchmark case at tiny sizes (< 3 min)
	bash bench/run.sh --smoke

image:            ## build the image without Docker Hub: Debian's docker.io, a debootstrap base (scripts/build-image.sh)
	bash scripts/build-image.sh

manifests:        ## regenerate manifests/ from the Helm chart
	$(BIN)/python scripts/render_manifests.py

check-manifests:
	$(BIN)/python scripts/render_manifests.py --check
