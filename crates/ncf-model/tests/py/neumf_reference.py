"""The reference NeuMF (neumf.py's architecture and initialisation), for parity tests.

usage:
  neumf_reference.py forward CONFIG STATE IDS OUT
                                               load STATE (a state dict), score IDS (a .pt map with
                                               users, items), save the logits to OUT
  neumf_reference.py init SEED CONFIG STATE    build a model (seeded), save its state dict to STATE
                                               with DDP's `module.` prefix
CONFIG is JSON: {"users", "items", "mf_dim", "layers": [...], "dropout"}."""
import json, sys
import numpy as np
import torch
import torch.nn as nn


class NeuMF(nn.Module):
    def __init__(self, nb_users, nb_items, mf_dim, mlp_layer_sizes, dropout=0):
        if mlp_layer_sizes[0] % 2 != 0:
            raise RuntimeError("u dummy, mlp_layer_sizes[0] % 2 != 0")
        super().__init__()
        self.mf_user_embed = nn.Embedding(nb_users, mf_dim)
        self.mf_item_embed = nn.Embedding(nb_items, mf_dim)
        self.mlp_user_embed = nn.Embedding(nb_users, mlp_layer_sizes[0] // 2)
        self.mlp_item_embed = nn.Embedding(nb_items, mlp_layer_sizes[0] // 2)
        self.dropout = dropout
        self.mlp = nn.ModuleList()
        for i in range(1, len(mlp_layer_sizes)):
            self.mlp.extend([nn.Linear(mlp_layer_sizes[i - 1], mlp_layer_sizes[i])])
        self.final = nn.Linear(mlp_layer_sizes[-1] + mf_dim, 1)
        for e in (self.mf_user_embed, self.mf_item_embed, self.mlp_user_embed, self.mlp_item_embed):
            e.weight.data.normal_(0.0, 0.01)
        for layer in self.mlp:
            limit = np.sqrt(6.0 / (layer.in_features + layer.out_features))
            layer.weight.data.uniform_(-limit, limit)
        limit = np.sqrt(3.0 / self.final.in_features)
        self.final.weight.data.uniform_(-limit, limit)

    def forward(self, user, item, sigmoid=False):
        xmf = self.mf_user_embed(user) * self.mf_item_embed(item)
        xmlp = torch.cat((self.mlp_user_embed(user), self.mlp_item_embed(item)), dim=1)
        for layer in self.mlp:
            xmlp = nn.functional.relu(layer(xmlp))
            if self.dropout != 0:
                xmlp = nn.functional.dropout(xmlp, p=self.dropout, training=self.training)
        x = self.final(torch.cat((xmf, xmlp), dim=1))
        return torch.sigmoid(x) if sigmoid else x


def build(cfg):
    return NeuMF(cfg["users"], cfg["items"], cfg["mf_dim"], cfg["layers"], cfg["dropout"])


if __name__ == "__main__":
    if sys.argv[1] == "forward":
        cfg, state, ids, out = json.loads(sys.argv[2]), *sys.argv[3:6]
        d = torch.load(ids, weights_only=True)
        model = build(cfg)
        sd = torch.load(state, weights_only=True)
        model.load_state_dict({k.removeprefix("module."): v for k, v in sd.items()})
        model.eval()
        with torch.no_grad():
            torch.save(model(d["users"], d["items"]), out)
    elif sys.argv[1] == "init":
        seed, cfg, state = int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4]
        torch.manual_seed(seed)
        model = build(cfg)
        torch.save({"module." + k: v for k, v in model.state_dict().items()}, state)
