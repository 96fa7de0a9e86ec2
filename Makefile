# ncf-rs: the two commands a fresh machine needs are `make demo` and `make test`.
# Both install libtorch first when it is missing (scripts/setup-libtorch.sh, ~3 GB from PyPI, once
# per machine), then build.

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)

.PHONY: all setup build release test unit lint check-linking demo doc clean python python-test

all: build

# Runs the set-up unless both links it makes resolve (the machine-wide cache still exists).
# Then the gloo headers (Debian's libgloo-dev) for the gloo backend, unless present.
setup:
	@[ -e .libtorch/lib/libtorch_cpu.so ] && [ -x .torch-venv/bin/python3 ] || bash scripts/setup-libtorch.sh
	@[ -f /usr/include/gloo/rendezvous/store.h ] || bash scripts/setup-gloo-headers.sh

build: setup
	$(CARGO) build --workspace

# Binaries and examples in one build, so both see one feature set (a separate `cargo run --example`
# would resolve features anew and rebuild polars).
release: setup
	$(CARGO) build --workspace --release --bins --examples

# The README's test command: unit, integration and doc tests, the API docs without a warning
# (broken intra-doc links included; the libraries: a binary's docs are its --help), the two main examples (run, small),
# the crate outside the workspace that trains its own model through the libraries (examples/downstream),
# then the Python package (built into the set-up venv, its pytest suite and quickstart), then lints,
# then the CUDA-linking check. `--no-fail-fast`: one failing test binary does not hide
# the others' results (each CPU this runs on may fail another way).
EXAMPLE_DIR := $(TARGET_DIR)/example-run
SHARED_DIR := $(or $(NCF_SHARED_DIR),$(CURDIR)/../shared)
test: setup
	@bash scripts/setup-chromium.sh
	$(CARGO) test --workspace --all-targets --no-fail-fast
	$(CARGO) test --workspace --doc
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --workspace --no-deps --lib
	$(CARGO) run --quiet --example train_synthetic -- $(EXAMPLE_DIR) 1
	$(CARGO) run --quiet --example recommend -- $(EXAMPLE_DIR)/data $(EXAMPLE_DIR)/checkpoints/model.pth 1
	cd examples/downstream && CARGO_TARGET_DIR="$(TARGET_DIR)" $(CARGO) run --quiet -- "$(SHARED_DIR)/data/reference-prepared/ml-latest-small" 2
	$(CARGO) fmt --manifest-path examples/downstream/Cargo.toml --check
	$(MAKE) --no-print-directory python-test
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all --check
	bash scripts/check-cuda-linking.sh "$(TARGET_DIR)/debug"

# The Python package (python/, `import ncf_rs`): built by maturin into the set-up venv (.torch-venv,
# the one with torch 2.11.0), editable, so `.torch-venv/bin/python3 -c "import ncf_rs"` works after.
# A debug build (the crates' own opt-levels make training fast enough); `pip install ./python`
# builds a release wheel instead.
VENV := $(CURDIR)/.torch-venv
python: setup
	@bash scripts/setup-python.sh
	cd python && PIP_QUIET=1 VIRTUAL_ENV="$(VENV)" PATH="$(VENV)/bin:$$PATH" CARGO_TARGET_DIR="$(TARGET_DIR)" maturin develop --quiet

python-test: python
	NCF_SHARED_DIR="$(SHARED_DIR)" "$(VENV)/bin/python3" -m pytest python/tests -q -p no:cacheprovider
	"$(VENV)/bin/python3" examples/python/quickstart.py "$(SHARED_DIR)/data/ml-latest-small/ratings.csv" "$(EXAMPLE_DIR)/python"
	cd python && PATH="$(VENV)/bin:$$PATH" CARGO_TARGET_DIR="$(TARGET_DIR)" $(CARGO) clippy -- -D warnings
	$(CARGO) fmt --manifest-path python/Cargo.toml --check

lint: setup
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) fmt --all --check

check-linking: build
	bash scripts/check-cuda-linking.sh "$(TARGET_DIR)/debug"

demo: release
	bash scripts/demo.sh

# The API docs (target/doc/ncf_rs/index.html); the guide is docs/src (mdBook's layout, plain Markdown).
doc: setup
	$(CARGO) doc --workspace --no-deps --lib

clean:
	$(CARGO) clean
