#!/usr/bin/env python3
"""The way a Python user would serve a trained NCF checkpoint online: FastAPI + uvicorn + PyTorch,
every item scored for the user on each request, the user's train items left out, top-k in raw ids.
It is the comparison point of scripts/bench-serve.sh (issue #28) for ncf-serve; it serves
`GET /v1/users/{user}/recommendations?k=10` only, answering as ncf-serve does.

    python3 scripts/serve_fastapi.py --data DIR --load_checkpoint_path model.pth [--port 8081]
        [--workers N] [--threads T]

Reads the prepared dataset's layout as ncf-prepare writes it (train_data_0.pt = [user, item] pairs,
train_data_1.pt = labels, user_ids.pt / item_ids.pt id maps) and a NeuMF or MF state dict (as
ncf-train and the reference save them). --workers uvicorn processes, each with --threads torch
threads: tune both to the machine's cores (bench-serve.sh tries 1x2 and 2x1 on 2 cores).
"""
import argparse
import os

import torch
import uvicorn
from fastapi import FastAPI, HTTPException


def load_state(path):
    sd = torch.load(path, map_location="cpu")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in sd.items()}


class NeuMF(torch.nn.Module):
    """The reference's NeuMF (ncf.py's model), forward in evaluation mode."""

    def __init__(self, sd):
        super().__init__()
        self.sd = sd
        n = 0
        while f"mlp.{n}.weight" in sd:
            n += 1
        self.layers = [(sd[f"mlp.{k}.weight"], sd[f"mlp.{k}.bias"]) for k in range(n)]

    def all_items(self, user):
        sd = self.sd
        gmf = sd["mf_user_embed.weight"][user] * sd["mf_item_embed.weight"]
        items = sd["mlp_item_embed.weight"]
        x = torch.cat([sd["mlp_user_embed.weight"][user].expand(items.shape[0], -1), items], dim=1)
        for w, b in self.layers:
            x = torch.relu(torch.nn.functional.linear(x, w, b))
        return torch.nn.functional.linear(torch.cat([gmf, x], dim=1), sd["final.weight"], sd["final.bias"]).view(-1)


class MF(torch.nn.Module):
    """Dot-product MF with biases (ncf-rs's --model mf)."""

    def __init__(self, sd):
        super().__init__()
        self.sd = sd

    def all_items(self, user):
        sd = self.sd
        return (sd["item_embed.weight"] @ sd["user_embed.weight"][user] + sd["item_bias.weight"].view(-1)
                + sd["user_bias.weight"][user] + sd["global_bias"])


def build_app(data, checkpoint, threads):
    torch.set_num_threads(threads)
    torch.set_grad_enabled(False)
    sd = load_state(checkpoint)
    model = NeuMF(sd) if "mlp_user_embed.weight" in sd else MF(sd)
    user_ids = torch.load(os.path.join(data, "user_ids.pt")).tolist()
    item_ids = torch.load(os.path.join(data, "item_ids.pt")).tolist()
    user_index = {str(raw): k for k, raw in enumerate(user_ids)}
    pairs = torch.load(os.path.join(data, "train_data_0.pt"))
    labels = torch.load(os.path.join(data, "train_data_1.pt")).view(-1)
    pairs = pairs[labels > 0.5]
    order = torch.argsort(pairs[:, 0], stable=True)
    users_sorted, items_sorted = pairs[order, 0], pairs[order, 1]
    starts = torch.searchsorted(users_sorted, torch.arange(len(user_ids) + 1))
    app = FastAPI()

    @app.get("/v1/users/{user}/recommendations")
    def recommend(user: str, k: int = 10, exclude_seen: bool = True):
        u = user_index.get(user)
        if u is None:
            raise HTTPException(404, f"user {user} is not in the dataset")
        if not 1 <= k <= len(item_ids):
            raise HTTPException(400, f"k must be an integer from 1 to {len(item_ids)}")
        scores = torch.sigmoid(model.all_items(u))
        if exclude_seen:
            scores[items_sorted[starts[u]:starts[u + 1]]] = float("-inf")
        top_scores, top_items = torch.topk(scores, k)
        return {"user": user_ids[u],
                "items": [{"item": item_ids[i], "score": s} for i, s in zip(top_items.tolist(), top_scores.tolist())]}

    return app


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True)
    p.add_argument("--load_checkpoint_path", required=True)
    p.add_argument("--port", type=int, default=8081)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    a = p.parse_args()
    os.environ["NCF_FASTAPI_ARGS"] = f"{a.data}\n{a.load_checkpoint_path}\n{a.threads}"
    uvicorn.run("serve_fastapi:app_from_env", factory=True, host="127.0.0.1", port=a.port, workers=a.workers,
                log_level="warning", app_dir=os.path.dirname(os.path.abspath(__file__)))


def app_from_env():
    data, checkpoint, threads = os.environ["NCF_FASTAPI_ARGS"].split("\n")
    return build_app(data, checkpoint, int(threads))


if __name__ == "__main__":
    main()
