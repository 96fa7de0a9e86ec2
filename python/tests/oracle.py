"""PyTorch's own models, written as the reference writes NeuMF (neumf.py), to check ncf_rs against."""
import torch
import torch.nn as nn


class NeuMF(nn.Module):
    """The reference's NeuMF: GMF and MLP branches, their outputs concatenated into one logit."""

    def __init__(self, users, items, mf_dim, layers):
        super().__init__()
        self.mf_user_embed = nn.Embedding(users, mf_dim)
        self.mf_item_embed = nn.Embedding(items, mf_dim)
        self.mlp_user_embed = nn.Embedding(users, layers[0] // 2)
        self.mlp_item_embed = nn.Embedding(items, layers[0] // 2)
        self.mlp = nn.ModuleList(nn.Linear(a, b) for a, b in zip(layers[:-1], layers[1:]))
        self.final = nn.Linear(layers[-1] + mf_dim, 1)

    def forward(self, user, item):
        xmf = self.mf_user_embed(user) * self.mf_item_embed(item)
        xmlp = torch.cat((self.mlp_user_embed(user), self.mlp_item_embed(item)), dim=1)
        for layer in self.mlp:
            xmlp = torch.relu(layer(xmlp))
        return self.final(torch.cat((xmf, xmlp), dim=1))


def neumf_of(state):
    """A NeuMF shaped by a state dict's tensors (keys with or without DDP's `module.`), loaded."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    users, mf_dim = state["mf_user_embed.weight"].shape
    items = state["mf_item_embed.weight"].shape[0]
    layers = [state["mlp.0.weight"].shape[1]]
    i = 0
    while f"mlp.{i}.weight" in state:
        layers.append(state[f"mlp.{i}.weight"].shape[0])
        i += 1
    model = NeuMF(users, items, mf_dim, layers)
    model.load_state_dict(state)
    return model.eval()
