"""float32 matrix products on the CPU at NeuMF's shapes: MKL's sgemm (what libtorch's addmm and
mm call; pinned by MKL_CBWR as ncf-train pins it, or not, as the reference runs) against oneDNN
(what `--cpu-matmul onednn` runs), in GFLOP/s, median of 20 timed calls after 2 warm-ups.

    .torch-venv/bin/python3 scripts/bench-matmul.py               # MKL as the reference runs it
    MKL_CBWR=AVX2 .torch-venv/bin/python3 scripts/bench-matmul.py # MKL as ncf-train pins it

The oneDNN column goes through torch.ops.mkldnn._linear_pointwise (oneDNN's inner product, bias
inside, fixed shapes); ncf-train calls oneDNN's matmul primitive (at::native::mkldnn_matmul), which
takes a new row count without building a new kernel. Both run oneDNN's AVX-512 float32 kernels."""
import os
import platform
import time

import torch


def median_seconds(f, n=20):
    f()
    f()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return sorted(times)[n // 2]


def main():
    torch.manual_seed(0)
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    print(f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, MKL_CBWR={os.environ.get('MKL_CBWR', '(unset)')}")
    print(f"{'rows x in x out':>20} {'MKL addmm':>10} {'MKL dW':>10} {'oneDNN':>10}  (GFLOP/s)")
    # Layers 2 and 3 of NeuMF at a 16,384 batch, and a first layer taken per distinct id.
    for n, k, m in [(16384, 256, 128), (16384, 128, 64), (8000, 128, 256)]:
        x, w, b, dy = torch.randn(n, k), torch.randn(m, k), torch.randn(m), torch.randn(n, m)
        flops = 2 * n * k * m
        mkl = median_seconds(lambda: torch.addmm(b, x, w.t()))
        mkl_dw = median_seconds(lambda: dy.t().mm(x))
        onednn = median_seconds(lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""))
        print(f"{f'{n} x {k} x {m}':>20} {flops / mkl / 1e9:10.0f} {flops / mkl_dw / 1e9:10.0f} {flops / onednn / 1e9:10.0f}")


if __name__ == "__main__":
    main()
