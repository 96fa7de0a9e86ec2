"""The reference's evaluation, op for op (dataloading.py's duplicate mask + ncf.py's val_epoch), on
the tensors of a .pt map (items, labels, scores: flat, lists of S consecutive rows). Prints JSON
{k: {"hits": int, "ndcg": float}} for each k.

usage: reference_eval.py FILE S K [K ...]"""
import json, math, sys
import torch

path, S, ks = sys.argv[1], int(sys.argv[2]), [int(k) for k in sys.argv[3:]]
d = torch.load(path, weights_only=True)
items, labels, scores = d["items"].view(-1, S), d["labels"].view(-1, S), d["scores"].view(-1, S)
# _deduplication_augmentation: sort by item - 0.5 * label, mask an item equal to its left neighbour
_, order = torch.sort(items - labels * 0.5, dim=1)
items, labels, scores = (torch.gather(t, 1, order) for t in (items, labels, scores))
mask = torch.zeros_like(items, dtype=torch.bool)
mask[:, 1:] = items[:, 1:] == items[:, :-1]
out = {}
for k in ks:
    ratings = scores.clone()
    ratings[mask] = -1
    top_indices = torch.topk(ratings, k)[1]
    labels_of_selected = torch.gather(labels, 1, top_indices)
    ifzero = labels_of_selected == 1
    hits = ifzero.sum()
    ndcg = (math.log(2) / (torch.nonzero(ifzero)[:, 1].view(-1).to(torch.float) + 2).log_()).sum()
    out[k] = {"hits": hits.item(), "ndcg": ndcg.item()}
print(json.dumps(out))
