#!/usr/bin/env python3
"""Sparse (touched-rows all-gather) vs dense (ring all-reduce) gradient bytes per step for
NeuMF on ML-20m-shaped data, reference defaults (batch 2^20, 4 negatives, factors 64,
MLP [256,256,128,64]).  Degree distribution: replays the RNG stream of
shared/tools/make_ml20m_like.py (seed 20, scale 1) without writing the CSV, then drops
each user's last-by-time rating (leave-one-out) to get the train positives.
Two sharding models:
  A  (as in the brief)  global shuffle, each rank takes a contiguous 1/N of each global batch:
     a rank's step = uniform s-subset of all 5P samples.
  B  (as crates/ncf-train/src/data.rs and the old NVIDIA reference do) rank r takes the
     contiguous slice [5P r/N, 5P (r+1)/N) of the UNshuffled epoch (positives grouped by user,
     then users.repeat(4) with uniform items), shuffles only inside it: a rank's step = uniform
     s-subset of its slice.  Sparse all-gather padded to the largest rank's payload.
usage: .torch-venv/bin/python3 scripts/sparse-allreduce-model.py   (numpy; ~2 minutes of one core)
The figures and the decision they led to: docs/src/distributed-and-gpu.md.
"""
import math, os, sys
import numpy as np

USERS, ITEMS, ROWS, MAX_ID = 138_493, 26_744, 20_000_263, 131_262
SHARED = os.environ.get("NCF_SHARED_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared"))
CACHE = os.path.join(os.environ.get("TMPDIR", "/tmp"), "ml20m_like_train.npz")


def replay(seed=20):
    rng = np.random.default_rng(seed)
    users, items, rows = USERS, ITEMS, ROWS
    extra = rng.lognormal(mean=3.6, sigma=1.25, size=users)
    extra *= (rows - 20 * users) / extra.sum()
    counts = np.minimum(20 + np.floor(extra).astype(np.int64), items)
    pop = 1.0 / np.arange(1, items + 1) ** 0.9
    pop /= pop.sum()
    rng.choice(np.arange(1, MAX_ID + 1), size=items, replace=False)  # ids: irrelevant, keep stream
    perm = rng.permutation(items)
    t0, t1 = 789_652_009, 1_427_784_002
    train_items = []
    for u in range(users):
        c = int(counts[u])
        draw = np.unique(perm[rng.choice(items, size=int(c * 1.3) + 8, p=pop)])
        if len(draw) < c:
            rest = np.setdiff1d(np.arange(items), draw)
            draw = np.concatenate([draw, rng.choice(rest, size=c - len(draw), replace=False)])
        chosen = np.sort(rng.choice(draw, size=c, replace=False))  # ids sorted <=> indices sorted
        start = rng.integers(t0, t1 - 86_400)
        ts = start + rng.integers(0, min(t1 - start, 3 * 365 * 86_400), size=c)
        rng.integers(1, 11, size=c)  # ratings
        order = np.argsort(ts, kind="stable")  # time sort, stable; last one is held out
        train_items.append(chosen[order[:-1]].astype(np.int32))
    deg = np.array([len(t) for t in train_items], dtype=np.int64)
    return counts, deg, np.concatenate(train_items)


def lg(x):
    return np.vectorize(math.lgamma, otypes=[float])(np.asarray(x, dtype=float) + 1.0)


def p_none(m, S, s):
    """P(an s-subset of S samples misses all m given samples) (hypergeometric)."""
    m = np.asarray(m, dtype=np.int64)
    out = np.zeros(m.shape)
    ok = S - m >= s
    mm = m[ok]
    out[ok] = np.exp(lg(S - mm) - lg(S - mm - s) - lg(S) + lg(S - s))
    return out


def main():
    if os.path.exists(CACHE):
        z = np.load(CACHE); counts, deg, titems = z["counts"], z["deg"], z["titems"]
    else:
        counts, deg, titems = replay(); np.savez(CACHE, counts=counts, deg=deg, titems=titems)
    U, I = len(deg), ITEMS
    P = int(deg.sum()); S_all = 5 * P; GB = 1 << 20
    ideg = np.bincount(titems, minlength=I)
    # --- parameter counts
    emb = (U + I) * (64 + 128)
    mlp = (256 * 256 + 256) + (256 * 128 + 128) + (128 * 64 + 64) + (128 + 1)
    D, M = 4 * (emb + mlp), 4 * mlp
    pr = print
    pr(f"ratings {counts.sum():,}  train positives P={P:,}  epoch samples 5P={S_all:,}  steps/epoch {(S_all + GB - 1)//GB - 1}")
    q = np.percentile
    pr(f"user train degree: min {deg.min()} median {q(deg,50):.0f} mean {deg.mean():.1f} p99 {q(deg,99):.0f} max {deg.max()}")
    pr(f"item train degree: min {ideg.min()} median {q(ideg,50):.0f} mean {ideg.mean():.1f} p99 {q(ideg,99):.0f} max {ideg.max()}")
    try:
        import csv
        r = np.array([(int(a[0]), int(a[1])) for a in list(csv.reader(open(os.path.join(SHARED, "data/ml-latest-small/ratings.csv"))))[1:]])
        for name, d in (("gen users", deg), ("gen items", ideg),
                        ("small users", np.unique(r[:, 0], return_counts=True)[1]),
                        ("small items", np.unique(r[:, 1], return_counts=True)[1])):
            d = np.sort(d)[::-1]; c = np.cumsum(d) / d.sum()
            pr(f"  shape {name:12s}: top1% rows hold {c[max(0,len(d)//100-1)]:.1%}, top10% hold {c[len(d)//10-1]:.1%}, max/mean {d[0]/d.mean():.0f}")
    except Exception as e:
        pr("ml-latest-small check skipped:", e)
    pr(f"params: embeddings {emb:,} + MLP {mlp:,} = {emb+mlp:,}  ->  D = {D:,} bytes ({D/1e6:.3f} MB), MLP = {M:,} bytes")
    ROW = 8 + 192 * 4
    off = np.concatenate([[0], np.cumsum(deg)[:-1]])

    def model_a(N):
        s = GB // N
        # brief's formula (with replacement) and exact hypergeometric (without)
        pu, pi = deg / S_all * 5 / 5, None
        pu = 5 * deg / S_all
        pi = (ideg + 4 * P / I) / S_all
        wu = np.sum(1 - (1 - pu) ** s); wi = np.sum(1 - (1 - pi) ** s)
        hu = np.sum(1 - p_none(5 * deg, S_all, s))
        hi = np.sum(1 - p_none(ideg, S_all, s) * (1 - 1 / I) ** (s * 4 / 5))
        return wu, wi, hu, hi

    def model_b(N):
        s = GB // N; tu = []; ti = []
        for r in range(N):
            x, y = S_all * r // N, S_all * (r + 1) // N; S = y - x
            m = np.zeros(U, dtype=np.int64)
            for c in range(5):
                lo = np.maximum(x, c * P + off); hi = np.minimum(y, c * P + off + deg)
                m += np.maximum(hi - lo, 0)
            a, b = min(x, P), min(y, P)
            ai = np.bincount(titems[a:b], minlength=I)
            nneg = max(0, y - max(x, P))
            kneg = s * nneg / S
            tu.append(np.sum(1 - p_none(m, S, s)))
            ti.append(np.sum(1 - p_none(ai, S, s) * (1 - 1 / I) ** kneg))
        tu, ti = np.array(tu), np.array(ti)
        pay = (tu + ti) * ROW
        return tu.mean(), ti.mean(), pay.max()

    pr()
    pr("N  | s=2^20/N | A: users  items (w/ repl; hypergeo) | B: users items (mean/rank) | dense MB | sparse A MB | sparse B MB | 10Gb/s ms dense/A/B | 100Gb/s ms dense/A/B | +50us/msg @10G dense/A/B | @100G dense/A/B")
    for N in (2, 4, 8, 16, 64):
        s = GB // N
        wu, wi, hu, hi = model_a(N)
        bu, bi, bpay = model_b(N)
        dense = 2 * (N - 1) / N * D
        mlp_ar = 2 * (N - 1) / N * M
        sa = (N - 1) * (hu + hi) * ROW + mlp_ar
        sb = (N - 1) * bpay + mlp_ar
        t = lambda B, bw: B * 8 / bw * 1e3
        lat_d = 2 * (N - 1) * 50e-3; lat_s = 3 * (N - 1) * 50e-3  # ms; sparse: (N-1) all-gather + 2(N-1) MLP all-reduce
        cells = [f"{N:<3d}", f"{s:>8,}",
                 f"A {wu:>8,.0f} {wi:>6,.0f} ; {hu:>8,.0f} {hi:>6,.0f}",
                 f"B {bu:>8,.0f} {bi:>6,.0f}",
                 f"{dense/1e6:8.1f}", f"{sa/1e6:9.1f}", f"{sb/1e6:9.1f}",
                 f"{t(dense,10e9):6.1f}/{t(sa,10e9):6.1f}/{t(sb,10e9):6.1f}",
                 f"{t(dense,100e9):5.2f}/{t(sa,100e9):5.2f}/{t(sb,100e9):5.2f}",
                 f"{t(dense,10e9)+lat_d:6.1f}/{t(sa,10e9)+lat_s:6.1f}/{t(sb,10e9)+lat_s:6.1f}",
                 f"{t(dense,100e9)+lat_d:5.2f}/{t(sa,100e9)+lat_s:5.2f}/{t(sb,100e9)+lat_s:5.2f}"]
        pr(" | ".join(cells))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
