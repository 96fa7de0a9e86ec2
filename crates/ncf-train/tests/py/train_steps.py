"""The reference's training step (ncf.py: BCEWithLogitsLoss(reduction='none') then torch.mean, Adam,
grads set to None), run on given batches from a given state dict, for parity tests.

usage: train_steps.py CONFIG STATE BATCHES OUT
  CONFIG   JSON {"users", "items", "mf_dim", "layers", "dropout", "lr", "beta1", "beta2", "eps"}, and
           "float64": true to run the same steps in float64 (model, labels and loss)
  STATE    the starting state dict
  BATCHES  a .pt map with users/items [S, B] (int64) and labels [S, B] (float32): step s trains on row s
  OUT      the state dict after the S steps, and the per-step losses under `loss`"""
import json, os, sys
import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "../../../ncf-model/tests/py"))
from neumf_reference import build  # noqa: E402

cfg, state, batches, out = json.loads(sys.argv[1]), *sys.argv[2:5]
torch.set_num_threads(1)
model = build(cfg)
model.load_state_dict({k.removeprefix("module."): v for k, v in torch.load(state, weights_only=True).items()})
float64 = cfg.get("float64", False)
if float64:
    model.double()
model.train()
optimizer = torch.optim.Adam(model.parameters(), lr=cfg["lr"], betas=(cfg["beta1"], cfg["beta2"]), eps=cfg["eps"])
criterion = nn.BCEWithLogitsLoss(reduction="none")
b = torch.load(batches, weights_only=True)
losses = []
for s in range(b["users"].shape[0]):
    outputs = model(b["users"][s], b["items"][s])
    labels = b["labels"][s].view(-1, 1).to(outputs.dtype)
    per_sample = criterion(outputs, labels)
    # The reference's `.float()`; in float64 the loss stays in float64.
    loss = torch.mean((per_sample if float64 else per_sample.float()).view(-1), 0)
    loss.backward()
    optimizer.step()
    for p in model.parameters():
        p.grad = None
    losses.append(loss.detach())
result = dict(model.state_dict())
result["loss"] = torch.stack(losses)
torch.save(result, out)
