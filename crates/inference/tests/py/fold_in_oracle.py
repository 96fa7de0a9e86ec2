"""Fold-in written independently in PyTorch, the oracle of crates/inference/tests/fold_in.rs.

usage: fold_in_oracle.py STATE JOB OUT

STATE is a state dict (NeuMF, GMF, MLP or MF keys). JOB is JSON: {"history": [...], "negatives":
[[...] per step], "learning_rate", "prior_weight"}. Each user table's trained rows give a mean and a
standard deviation per column (float64, population, at least 1e-6, cast to float32); the person is
row = mean + std * z, z a parameter starting at 0, and torch.optim.Adam fits z, the model frozen, to
the binary cross-entropy summed over the history (label 1) and each step's negatives (label 0) plus
prior_weight * |z|^2 / 2. OUT gets JSON: {"rows": [[...] per user table], "logits": [all
items' logits for the fitted person]}, tables in the order NeuMF's GMF, MLP; MF's embedding, bias.
The model is the plain textbook forward (the MLP on the concatenated embeddings), not the split
first layer the Rust side uses."""
import json, sys
import torch
import torch.nn.functional as F


def load(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    return {k.removeprefix("module."): v.float() for k, v in sd.items()}


class Family:
    """NeuMF, GMF or MLP by which keys are present."""

    def __init__(self, sd):
        self.sd = sd
        self.gmf = "mf_user_embed.weight" in sd
        self.mlp = "mlp_user_embed.weight" in sd
        self.layers = sorted(
            {int(k.split(".")[1]) for k in sd if k.startswith("mlp.") and k.endswith(".weight")})
        self.tables = (["mf_user_embed.weight"] if self.gmf else []) + (
            ["mlp_user_embed.weight"] if self.mlp else [])

    def logits(self, rows, items):
        sd, parts, r = self.sd, [], list(rows)
        if self.gmf:
            parts.append(r.pop(0) * sd["mf_item_embed.weight"][items])
        if self.mlp:
            x = torch.cat([r.pop(0), sd["mlp_item_embed.weight"][items]], dim=1)
            for i in self.layers:
                x = F.relu(F.linear(x, sd[f"mlp.{i}.weight"], sd[f"mlp.{i}.bias"]))
            parts.append(x)
        return F.linear(torch.cat(parts, dim=1), sd["final.weight"], sd["final.bias"])


class MF:
    tables = ["user_embed.weight", "user_bias.weight"]

    def __init__(self, sd):
        self.sd = sd

    def logits(self, rows, items):
        sd = self.sd
        dot = (rows[0] * sd["item_embed.weight"][items]).sum(1, keepdim=True)
        return dot + rows[1] + sd["item_bias.weight"][items] + sd["global_bias"]


def main():
    state, job, out = sys.argv[1:4]
    sd = load(state)
    job = json.load(open(job))
    model = MF(sd) if "user_embed.weight" in sd else Family(sd)
    tables = [sd[t].double() for t in model.tables]
    mean = [t.mean(0, keepdim=True).float() for t in tables]
    std = [t.std(0, unbiased=False, keepdim=True).clamp_min(1e-6).float() for t in tables]
    z = [torch.nn.Parameter(torch.zeros_like(m)) for m in mean]
    opt = torch.optim.Adam(z, lr=job["learning_rate"])
    history = job["history"]
    for negs in job["negatives"]:
        items = torch.tensor(history + negs, dtype=torch.long)
        labels = torch.tensor([1.0] * len(history) + [0.0] * len(negs)).view(-1, 1)
        opt.zero_grad()
        n = len(items)
        rows = [m + s * v for m, s, v in zip(mean, std, z)]
        logits = model.logits([r.expand(n, -1) for r in rows], items)
        loss = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
        if job["prior_weight"] > 0:
            loss = loss + job["prior_weight"] / 2 * sum((v ** 2).sum() for v in z)
        loss.backward()
        opt.step()
    with torch.no_grad():
        rows = [m + s * v for m, s, v in zip(mean, std, z)]
        items = sd["item_embed.weight" if isinstance(model, MF) else next(
            k for k in ("mf_item_embed.weight", "mlp_item_embed.weight") if k in sd)].shape[0]
        all_items = torch.arange(items)
        logits = model.logits([r.expand(items, -1) for r in rows], all_items).view(-1)
    json.dump({"rows": [r.detach().view(-1).tolist() for r in rows], "logits": logits.tolist()}, open(out, "w"))


if __name__ == "__main__":
    main()
