"""Full-ranking metrics computed independently with numpy, for parity tests.

usage: full_ranking.py IN OUT K
  IN   a .pt map: scores [B, I] float32, positives [B] int64, seen_users [N], seen_items [N] int64
  OUT  a .pt map: ranks [B] int64, mask [B, I] bool, and float64 scalars hr, ndcg, mrr, precision, map

The rule: a user's known items (seen pairs) leave the ranking, except the positive itself; the
positive's rank is the number of remaining items scoring at least as much (ties count above it).
One loop per user, on purpose: nothing shared with the code under test."""
import math, sys
import numpy as np
import torch

d = torch.load(sys.argv[1], weights_only=True)
k = int(sys.argv[3])
scores = d["scores"].double().numpy()
positives = d["positives"].numpy()
seen_u, seen_i = d["seen_users"].numpy(), d["seen_items"].numpy()
B, I = scores.shape
mask = np.zeros((B, I), dtype=bool)
users = d["block_users"].numpy()
for b, u in enumerate(users):
    mask[b, seen_i[seen_u == u]] = True
ranks = []
for b in range(B):
    p = positives[b]
    s = np.where(np.isnan(scores[b]), -np.inf, scores[b])
    r = 0
    for j in range(I):
        if j == p or (mask[b, j] and j != p):
            continue
        if s[j] >= s[p]:
            r += 1
    ranks.append(r)
ranks = np.array(ranks)
hit = ranks < k
out = {
    "ranks": torch.from_numpy(ranks.astype(np.int64)),
    "mask": torch.from_numpy(mask),
    "hr": torch.tensor(hit.mean()),
    "ndcg": torch.tensor(np.where(hit, 1 / np.log2(ranks + 2), 0).mean()),
    "mrr": torch.tensor(np.where(hit, 1 / (ranks + 1), 0).mean()),
    "precision": torch.tensor((hit / k).mean()),
    # average precision@k with one relevant item: precision at its position if within k
    "map": torch.tensor(np.mean([sum((1 / (i + 1)) for i in range(k) if i == r) for r in ranks])),
}
torch.save(out, sys.argv[2])
