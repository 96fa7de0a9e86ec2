"""The Python face's overhead (issue #30): ncf_rs against the ncf-rs binaries and PyTorch eager.

    .torch-venv/bin/python3 scripts/bench-python.py [--rounds 6] [--epochs 5]

Needs release builds of both faces: `make release` (the binaries) and
`cd python && maturin develop --release` (ncf_rs in the set-up venv; `make python` puts the debug
build back). Prints two tables, with the CPU named:

1. Training: `ncf_rs.train` (in a fresh Python process) against the `ncf-train` binary, the same
   flags (NeuMF, the reference's layers, batch 16384, seed 1, CPU) on the real ml-latest-small,
   alternating, `--rounds` times each; samples/s per epoch from the DLLogger log both write (the
   first epoch left out as warm-up), median of the runs; one untimed run first, then the two faces
   alternating which goes first; MKL_CBWR=AVX2 for both (ncf-train's own default).
2. Scoring (the reference's own NeuMF checkpoint): `Model.score` from Python against `ncf-infer`'s
   benchmark of the same checkpoint and against a textbook PyTorch NeuMF (eager, no_grad, the same
   state dict), at batches of 1,024 and 65,536 random pairs; mean and median per batch. PyTorch is
   timed twice: in this process (which imported ncf_rs) and in a process of its own that never
   did, as a PyTorch user runs it; the two differ on some machines (see docs/src/python.md).
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

import torch

import ncf_rs

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "python" / "tests"))
from oracle import neumf_of  # noqa: E402

SHARED = pathlib.Path(os.environ.get("NCF_SHARED_DIR", REPO.parent / "shared"))
BIN = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "release"


def cpu_name():
    for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
        if line.startswith("Model name:"):
            return line.split(":", 1)[1].strip()
    return "unknown CPU"


def epoch_throughputs(log):
    out = []
    for line in pathlib.Path(log).read_text().splitlines():
        entry = json.loads(line.removeprefix("DLLL "))
        if isinstance(entry.get("step"), list) and "train_throughput" in entry.get("data", {}):
            out.append(entry["data"]["train_throughput"])
    return out


def train_rounds(data, work, rounds, epochs):
    flags = dict(model="neumf", epochs=epochs, batch_size=16384, learning_rate=0.002, seed=1, device="cpu")
    cli = [str(BIN / "ncf-train"), "--data", str(data), "--model", "neumf", "--epochs", str(epochs), "-b", "16384",
           "-l", "0.002", "--seed", "1", "--device", "cpu"]
    # MKL_CBWR=AVX2 for both: the binary sets it when unset; the Python face leaves it to the user.
    env = {**os.environ, "MKL_CBWR": os.environ.get("MKL_CBWR", "AVX2")}

    def binary(run):
        subprocess.run(cli + ["--checkpoint_dir", str(run), "--log_path", str(run / "log.json")], check=True,
                       capture_output=True, env=env)

    def python(run):
        code = (f"import ncf_rs; ncf_rs.train({str(data)!r}, checkpoint_dir={str(run)!r}, "
                f"log_path={str(run / 'log.json')!r}, progress=False, **{flags!r})")
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, env=env)

    faces = [("ncf-train (binary)", binary), ("ncf_rs.train (Python)", python)]
    results = {name: [] for name, _ in faces}
    binary(work / "warm-up")  # the page cache and the CPU's clocks, before anything counts
    for r in range(rounds):
        # Alternating which face goes first, so neither always runs on a warmer machine.
        for name, face in faces if r % 2 == 0 else faces[::-1]:
            run = work / f"{name.split()[0]}-{r}"
            face(run)
            results[name].append(statistics.mean(epoch_throughputs(run / "log.json")[1:]))
    return results


def time_calls(score, users, items, n):
    for _ in range(10):
        score(users[0], items[0])
    took = []
    for i in range(n):
        start = time.perf_counter()
        score(users[i % len(users)], items[i % len(items)])
        took.append(time.perf_counter() - start)
    return statistics.mean(took), statistics.median(took)


EAGER_ALONE = """
import json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[1])
from oracle import neumf_of
eager = neumf_of(torch.load(sys.argv[2], map_location="cpu", weights_only=True))
g = torch.Generator().manual_seed(0)
out = {}
for batch, n in ((1024, 300), (65536, 40)):
    users = [torch.randint(0, 610, (batch,), generator=g) for _ in range(8)]
    items = [torch.randint(0, 9724, (batch,), generator=g) for _ in range(8)]
    def score(u, i):
        with torch.no_grad():
            return torch.sigmoid(eager(u, i))
    for _ in range(10):
        score(users[0], items[0])
    took = []
    for k in range(n):
        start = time.perf_counter()
        score(users[k % 8], items[k % 8])
        took.append(time.perf_counter() - start)
    out[batch] = statistics.mean(took)
print(json.dumps(out))
"""


def eager_alone(checkpoint):
    """PyTorch eager in a process of its own, one that never imported ncf_rs (as a PyTorch user runs)."""
    out = subprocess.run([sys.executable, "-c", EAGER_ALONE, str(REPO / "python" / "tests"), str(checkpoint)],
                         check=True, capture_output=True, text=True)
    return {int(k): v for k, v in json.loads(out.stdout).items()}


def score_table(reference, work):
    checkpoint = reference / "reference_model.pth"
    model = ncf_rs.Model.load(checkpoint)
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    eager = neumf_of(state)
    alone = eager_alone(checkpoint)
    g = torch.Generator().manual_seed(0)
    rows = []
    for batch, n in ((1024, 300), (65536, 40)):
        users = [torch.randint(0, model.users, (batch,), generator=g) for _ in range(8)]
        items = [torch.randint(0, model.items, (batch,), generator=g) for _ in range(8)]

        def torch_score(u, i):
            with torch.no_grad():
                return torch.sigmoid(eager(u, i))

        ours = time_calls(model.score, users, items, n)
        theirs = time_calls(torch_score, users, items, n)
        log = work / f"infer-{batch}.json"
        subprocess.run([str(BIN / "ncf-infer"), "--load_checkpoint_path", str(checkpoint), "--n_users", "610",
                        "--n_items", "9724", "--batch_sizes", str(batch), "--num_batches", str(n), "--device", "cpu",
                        "--log_path", str(log)], check=True, capture_output=True)
        end = [json.loads(l.removeprefix("DLLL ")) for l in log.read_text().splitlines()][-1]["data"]
        rows.append((batch, ours, theirs, end[f"batch_{batch}_mean_latency"], alone[batch]))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--score-only", action="store_true", help="skip the training comparison")
    args = parser.parse_args()
    for b in ("ncf-train", "ncf-infer"):
        if not (BIN / b).exists():
            sys.exit(f"bench-python: {BIN / b} not found; run `make release`")
    print(f"CPU: {cpu_name()}, {os.cpu_count()} cores; torch {torch.__version__}, "
          f"libtorch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        data = work / "ml-latest-small"
        ncf_rs.prepare(SHARED / "data" / "ml-latest-small" / "ratings.csv", data)
        results = {} if args.score_only else train_rounds(data, work, args.rounds, args.epochs)
        if results:
            print(f"\ntraining NeuMF on ml-latest-small, batch 16384, {args.epochs} epochs, {args.rounds} runs each "
                  "(samples/s, mean of epochs 2+, per run)")
            medians = {}
            for name, runs in results.items():
                medians[name] = statistics.median(runs)
                print(f"  {name:<24} median {medians[name]:>10,.0f}   runs " + ", ".join(f"{x:,.0f}" for x in runs))
            ratio = medians["ncf_rs.train (Python)"] / medians["ncf-train (binary)"]
            print(f"  Python / binary: {ratio:.3f}")
        rows = score_table(SHARED / "data" / "reference-prepared" / "ml-latest-small", work)
    print("\nscoring the reference NeuMF checkpoint (ms per batch: mean / median; ncf-infer and the lone PyTorch"
          " process report their mean)")
    print(f"  {'batch':>7} {'Model.score':>18} {'eager, same process':>20} {'eager, own process':>19} {'ncf-infer':>10}"
          f" {'eager/score':>12} {'own/score':>10} {'score/infer':>12}")
    for batch, ours, theirs, infer, lone in rows:
        print(f"  {batch:>7} {ours[0] * 1e3:>8.3f} / {ours[1] * 1e3:>7.3f} {theirs[0] * 1e3:>9.3f} / {theirs[1] * 1e3:>8.3f}"
              f" {lone * 1e3:>19.3f} {infer * 1e3:>10.3f} {theirs[0] / ours[0]:>12.2f} {lone / ours[0]:>10.2f}"
              f" {ours[0] / infer:>12.2f}")


if __name__ == "__main__":
    main()
