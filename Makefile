# ncf-rs: the two commands a fresh machine needs are `make demo` and `make test`.
# Both install libtorch first when it is missing (scripts/setup-libtorch.sh, ~3 GB from PyPI, once
# per machine), then build.

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# Present once scripts/setup-libtorch.sh has run and the machine-wide cache it points at still exists.
LIBTORCH_READY := .libtorch/lib/libtorch_cpu.so

.PHONY: all setup build release test unit lint check-linking demo clean

all: build

setup: $(LIBTORCH_READY)

$(LIBTORCH_READY):
	bash scripts/setup-libtorch.sh

build: setup
	$(CARGO) build --workspace

release: setup
	$(CARGO) build --workspace --release

# The README's test command: unit, integration and doc tests, then lints, then the CUDA-linking check.
test: setup
	$(CARGO) test --workspace --all-targets
	$(CARGO) test --workspace --doc
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all --check
	bash scripts/check-cuda-linking.sh "$(TARGET_DIR)/debug"

lint: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all --check

check-linking: build
	bash scripts/check-cuda-linking.sh "$(TARGET_DIR)/debug"

demo: release
	bash scripts/demo.sh

clean:
	$(CARGO) clean
