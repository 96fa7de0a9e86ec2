"""Full-ranking evaluation of a NeuMF checkpoint done by PyTorch alone: the reference NeuMF (the model
crate's test script) scores every item for every test user (pair by pair, in chunks: no algebra
shared with ncf-model's all-item scoring), each user's train positives (and validation positive,
when the dataset has one) are left out, and the test positive's rank counts the remaining items
scoring at least as much. Prints JSON with full_hr, full_ndcg, full_mrr, full_precision, full_map.

usage: full_ranking_oracle.py DATA MODEL_PTH FACTORS LAYERS_JSON K"""
import json, os, sys
import numpy as np
import torch, yaml

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "../../../../crates/ncf-model/tests/py"))
from neumf_reference import NeuMF  # noqa: E402

data, state, factors, layers, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
spec = yaml.safe_load(open(os.path.join(data, "feature_spec.yaml")))
S = spec["metadata"]["test_samples_per_series"]
fs = spec["feature_spec"]
n_users, n_items = fs["user"]["cardinality"], fs["item"]["cardinality"]
model = NeuMF(n_users, n_items, factors, layers, 0.5)
sd = torch.load(state, weights_only=True, map_location="cpu")
model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
model.eval()
load = lambda name: torch.load(os.path.join(data, name), weights_only=True, map_location="cpu")
train = load("train_data_0.pt")
train_labels = load("train_data_1.pt").view(-1)
seen = {}
for (u, i), l in zip(train.tolist(), train_labels.tolist()):
    if l > 0.5:
        seen.setdefault(u, set()).add(i)
if os.path.exists(os.path.join(data, "validation_data_0.pt")):
    v, vl = load("validation_data_0.pt"), load("validation_data_1.pt").view(-1)
    for (u, i), l in zip(v.tolist(), vl.tolist()):
        if l > 0.5:
            seen.setdefault(u, set()).add(i)
test, test_labels = load("test_data_0.pt").view(-1, S, 2), load("test_data_1.pt").view(-1, S)
ranks = []
items = torch.arange(n_items)
with torch.no_grad():
    for lst, lab in zip(test, test_labels):
        pos_row = int(torch.argmax(lab))
        u, p = int(lst[pos_row, 0]), int(lst[pos_row, 1])
        scores = model(torch.full((n_items,), u, dtype=torch.long), items).view(-1).double().numpy()
        keep = np.ones(n_items, dtype=bool)
        keep[list(seen.get(u, set()) - {p})] = False
        keep[p] = False
        ranks.append(int((scores[keep] >= scores[p]).sum()))
r = np.array(ranks)
hit = r < k
print(json.dumps({
    "users": len(r),
    "full_hr": float(hit.mean()),
    "full_ndcg": float(np.where(hit, 1 / np.log2(r + 2), 0).mean()),
    "full_mrr": float(np.where(hit, 1 / (r + 1), 0).mean()),
    "full_precision": float((hit / k).mean()),
    "full_map": float(np.where(hit, 1 / (r + 1), 0).mean()),
}))
