"""Evaluates a model.pth the reference's way, in PyTorch: the reference NeuMF (from the model
crate's test script) loads the state dict (torch.load weights_only=True, load_state_dict strict),
scores the dataset's test mapping, and the reference's duplicate mask + top-k give HR and NDCG.
Prints JSON {"hr": ..., "ndcg": ...}.

usage: evaluate_checkpoint.py DATA MODEL_PTH FACTORS LAYERS_JSON K"""
import json, math, os, sys
import torch, yaml

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "../../../../crates/ncf-model/tests/py"))
from neumf_reference import NeuMF  # noqa: E402

data, state, factors, layers, k = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4]), int(sys.argv[5])
spec = yaml.safe_load(open(os.path.join(data, "feature_spec.yaml")))
S = spec["metadata"]["test_samples_per_series"]
fs = spec["feature_spec"]
model = NeuMF(fs["user"]["cardinality"], fs["item"]["cardinality"], factors, layers, 0.5)
model.load_state_dict(torch.load(state, weights_only=True))
model.eval()
ids = torch.load(os.path.join(data, "test_data_0.pt"), weights_only=True)
labels = torch.load(os.path.join(data, "test_data_1.pt"), weights_only=True).view(-1, S)
users, items = ids[:, 0].view(-1, S), ids[:, 1].view(-1, S)
_, order = torch.sort(items - labels * 0.5, dim=1)
users, items, labels = (torch.gather(t, 1, order) for t in (users, items, labels))
mask = torch.zeros_like(items, dtype=torch.bool)
mask[:, 1:] = items[:, 1:] == items[:, :-1]
with torch.no_grad():
    ratings = model(users.reshape(-1), items.reshape(-1), sigmoid=True).view(-1, S)
ratings[mask] = -1
ifzero = torch.gather(labels, 1, torch.topk(ratings, k)[1]) == 1
hits = ifzero.sum().item()
ndcg = (math.log(2) / (torch.nonzero(ifzero)[:, 1].view(-1).to(torch.float) + 2).log_()).sum().item()
print(json.dumps({"hr": hits / labels.shape[0], "ndcg": ndcg / labels.shape[0]}))
