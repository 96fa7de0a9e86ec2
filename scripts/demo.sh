#!/usr/bin/env bash
# `make demo`: runs whatever part of the main job exists in this version, and says plainly what does
# not exist yet. (The full job, prepare -> train -> test -> recommend -> benchmark, lands with the
# main-job issue.)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
target="${CARGO_TARGET_DIR:-$here/target}/release"

echo "== 1. The libtorch the binaries run on"
"$target/ncf-train" --runtime-info

echo
echo "== 2. Feature specification check (crates/featurespec) on the project's example spec"
cargo run --quiet --release --example inspect_spec -- data/example-spec/feature_spec.yaml
ref="$here/../shared/data/reference-prepared/ml-latest-small/feature_spec.yaml"
if [ -f "$ref" ]; then
  echo
  echo "== 2b. ... and on the reference's prepared ml-latest-small spec"
  cargo run --quiet --release --example inspect_spec -- "$ref"
  echo
  echo "== 3. Loading that dataset's .pt files (crates/torchfile + crates/spec-dataset)"
  cargo run --quiet --release --example load_dataset -- "$(dirname "$ref")"
fi

echo
echo "== Not implemented yet in this version (see the README's status table):"
echo "   ncf-prepare (preprocessing), ncf-transcode, ncf-train (training), ncf-infer (benchmark, recommend)."
echo "   This demo did not train or evaluate anything."
