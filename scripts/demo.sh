#!/usr/bin/env bash
# `make demo`: the main job on the embedded synthetic dataset: prepare -> verify -> train (with
# checkpoints, a DLLogger log and curves) -> evaluate the checkpoint -> recommend -> benchmark
# inference, then a summary; says plainly what does not exist yet.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
bin="${CARGO_TARGET_DIR:-$here/target}/release"
out="${NCF_DEMO_DIR:-$here/demo-output}"
mkdir -p "$out"

echo "== 1. The libtorch the training and inference binaries run on"
"$bin/ncf-train" --runtime-info

echo
echo "== 2. Prepare the embedded synthetic dataset (ncf-prepare synthetic)"
"$bin/ncf-prepare" synthetic --output "$out/synthetic"

echo
echo "== 3. Check it as the reference's test_featurespec_correctness.py does (ncf-prepare verify)"
"$bin/ncf-prepare" verify "$out/synthetic"

echo
echo "== 4. Load its tensors through the library (examples/load_dataset.rs)"
"$bin/examples/load_dataset" "$out/synthetic"

echo
echo "== 5. Train NeuMF on it for 5 epochs (ncf-train; model.pth saved whenever HR@10 improves)"
"$bin/ncf-train" --data "$out/synthetic" -e 5 -b 16384 --seed 1 --checkpoint_dir "$out/checkpoints" \
  --log_path "$out/checkpoints/log.json" --plot "$out/curves.svg" | tee "$out/train-summary.txt"

echo
echo "== 6. Evaluate the best checkpoint alone (ncf-train --mode test)"
"$bin/ncf-train" --data "$out/synthetic" --mode test --load_checkpoint_path "$out/checkpoints/model.pth" \
  --log_path "" | tee "$out/test-summary.txt"

echo
echo "== 7. Top 5 items for users 1, 2 and 3, in the ratings file's ids (ncf-infer recommend)"
"$bin/ncf-infer" recommend --data "$out/synthetic" --load_checkpoint_path "$out/checkpoints/model.pth" \
  --users 1,2,3 -k 5 --output "$out/recommendations.csv"
cat "$out/recommendations.csv"

echo
echo "== 8. A short inference benchmark (ncf-infer, the inference.py job; random weights, ML-20m shape)"
"$bin/ncf-infer" --batch_sizes 1,1024,16384 --num_batches 50 --log_path "$out/inference-log.json" | tee "$out/inference.txt"

echo
echo "== Outputs"
echo "   dataset:          $out/synthetic (feature_spec.yaml, *.pt, id maps, raw ratings.csv)"
echo "   checkpoints:      $out/checkpoints (model.pth: PyTorch state dict; training_state.pt: for --resume)"
echo "   training log:     $out/checkpoints/log.json (DLLogger JSON lines, as the reference's log.json)"
echo "   curves:           $out/curves.svg (HR@10, NDCG@10, losses per epoch)"
echo "   recommendations:  $out/recommendations.csv"
echo "   inference log:    $out/inference-log.json"

echo
echo "== Summary"
python3 - "$out/checkpoints/log.json" "$out/inference-log.json" <<'PY'
import json, sys
lines = [json.loads(l[5:]) for l in open(sys.argv[1]) if l.startswith("DLLL ")]
end = [l for l in lines if l["type"] == "LOG" and l["step"] == []][-1]["data"]
best = end["best_epoch"]
epoch = [l["data"] for l in lines if l["type"] == "LOG" and l["step"] == [best]][0]
inf = json.loads(open(sys.argv[2]).read().strip()[5:])["data"]
print(f"   best HR@10 {end['best_accuracy']:.4f}, NDCG@10 {epoch['ndcg@10']:.4f} (epoch {best + 1}; a random ranking scores HR@10 ~0.10)")
print(f"   training {end['mean_train_throughput']:,.0f} samples/s (mean per epoch), evaluation {end['mean_eval_throughput']:,.0f} rows/s")
print(f"   inference {inf['batch_16384_mean_throughput']:,.0f} samples/s at batch 16384, {inf['batch_1_mean_latency'] * 1e3:.3f} ms at batch 1")
PY
echo
echo "== Unverified in this version (no GPU lent): the CUDA paths (AMP, TF32, NCCL multi-GPU); see docs/src/distributed-and-gpu.md."

echo
echo "== Serve the model online (ncf-serve; then open the URL, or curl it):"
echo "   $bin/ncf-serve --data $out/synthetic --load_checkpoint_path $out/checkpoints/model.pth"
echo "   curl 'http://127.0.0.1:8080/v1/users/1/recommendations?k=5'"
