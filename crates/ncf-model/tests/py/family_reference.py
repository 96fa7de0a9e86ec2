"""PyTorch implementations of GMF, MLP and MF (He et al. 2017; Rendle et al. 2020), written
independently of ncf-model, for parity tests: the state-dict keys are those ncf-model promises.

usage:
  family_reference.py forward CONFIG STATE IDS OUT   load STATE into the model CONFIG describes,
                                                     score IDS (a .pt map: users, items), save the
                                                     logits [N, 1] to OUT
  family_reference.py all-items CONFIG STATE IDS OUT probabilities of every item for IDS["users"]
CONFIG is JSON: {"model": "gmf"|"mlp"|"mf", "users", "items", "factors", "layers"}."""
import json, sys
import torch
import torch.nn as nn


class GMF(nn.Module):
    def __init__(self, users, items, factors):
        super().__init__()
        self.mf_user_embed = nn.Embedding(users, factors)
        self.mf_item_embed = nn.Embedding(items, factors)
        self.final = nn.Linear(factors, 1)

    def forward(self, user, item):
        return self.final(self.mf_user_embed(user) * self.mf_item_embed(item))


class MLP(nn.Module):
    def __init__(self, users, items, layers):
        super().__init__()
        self.mlp_user_embed = nn.Embedding(users, layers[0] // 2)
        self.mlp_item_embed = nn.Embedding(items, layers[0] // 2)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
        self.final = nn.Linear(layers[-1], 1)

    def forward(self, user, item):
        x = torch.cat((self.mlp_user_embed(user), self.mlp_item_embed(item)), dim=1)
        for layer in self.mlp:
            x = torch.relu(layer(x))
        return self.final(x)


class MF(nn.Module):
    def __init__(self, users, items, factors):
        super().__init__()
        self.user_embed = nn.Embedding(users, factors)
        self.item_embed = nn.Embedding(items, factors)
        self.user_bias = nn.Embedding(users, 1)
        self.item_bias = nn.Embedding(items, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))

    def forward(self, user, item):
        dot = (self.user_embed(user) * self.item_embed(item)).sum(dim=1, keepdim=True)
        return dot + self.user_bias(user) + self.item_bias(item) + self.global_bias


def build(cfg):
    if cfg["model"] == "gmf":
        return GMF(cfg["users"], cfg["items"], cfg["factors"])
    if cfg["model"] == "mlp":
        return MLP(cfg["users"], cfg["items"], cfg["layers"])
    return MF(cfg["users"], cfg["items"], cfg["factors"])


if __name__ == "__main__":
    command, cfg, state, ids, out = sys.argv[1], json.loads(sys.argv[2]), *sys.argv[3:6]
    model = build(cfg)
    # strict: every key ncf-model wrote must be one of this model's, and none missing
    model.load_state_dict(torch.load(state, weights_only=True), strict=True)
    model.eval()
    d = torch.load(ids, weights_only=True)
    with torch.no_grad():
        if command == "forward":
            torch.save(model(d["users"], d["items"]), out)
        else:
            users = d["users"]
            items = torch.arange(cfg["items"])
            u = users.repeat_interleave(len(items))
            i = items.repeat(len(users))
            torch.save(torch.sigmoid(model(u, i)).view(len(users), len(items)), out)
