#!/usr/bin/env python3
"""A plain PyTorch NeuMF training loop with the reference's computation (reference-semantics.md §4:
epoch = positives + n random negatives, shuffled on the device, batches with the last dropped, BCE
with logits, Adam lr 0.0045 betas 0.25/0.5 (torch's fused Adam), optional AMP with GradScaler, TF32
on CUDA), evaluated with the reference's HR@k after each epoch. The in-run baseline of
scripts/gpu-check.sh and scripts/bench-train.sh (the reference's own scripts are not in this
repository). Prints one line per epoch: samples/s and HR.

usage: pytorch_ncf_baseline.py DATA [--epochs 3] [--batch_size 1048576] [--device cuda] [--amp]"""
import argparse, math, os, time
import torch, yaml

p = argparse.ArgumentParser()
p.add_argument("data")
p.add_argument("--epochs", type=int, default=3)
p.add_argument("--batch_size", type=int, default=1 << 20)
p.add_argument("--valid_batch_size", type=int, default=1 << 20)
p.add_argument("--negative_samples", type=int, default=4)
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
p.add_argument("--amp", action="store_true")
p.add_argument("--seed", type=int, default=1)
a = p.parse_args()
torch.manual_seed(a.seed)
dev = torch.device(a.device)
torch.backends.cuda.matmul.allow_tf32 = True
torch.backends.cudnn.allow_tf32 = True

spec = yaml.safe_load(open(os.path.join(a.data, "feature_spec.yaml")))
S = spec["metadata"]["test_samples_per_series"]
n_users = spec["feature_spec"]["user"]["cardinality"]
n_items = spec["feature_spec"]["item"]["cardinality"]
load = lambda f: torch.load(os.path.join(a.data, f), weights_only=True, map_location=dev)
train = load("train_data_0.pt")
train_lab = load("train_data_1.pt").view(-1).float()
test = load("test_data_0.pt")
test_lab = load("test_data_1.pt").view(-1, S).float()


class NeuMF(torch.nn.Module):
    def __init__(self, users, items, f=64, layers=(256, 256, 128, 64), dropout=0.5):
        super().__init__()
        self.mf_user_embed = torch.nn.Embedding(users, f)
        self.mf_item_embed = torch.nn.Embedding(items, f)
        self.mlp_user_embed = torch.nn.Embedding(users, layers[0] // 2)
        self.mlp_item_embed = torch.nn.Embedding(items, layers[0] // 2)
        self.mlp = torch.nn.ModuleList(torch.nn.Linear(i, o) for i, o in zip(layers[:-1], layers[1:]))
        self.final = torch.nn.Linear(layers[-1] + f, 1)
        self.dropout = dropout
        for e in (self.mf_user_embed, self.mf_item_embed, self.mlp_user_embed, self.mlp_item_embed):
            e.weight.data.normal_(0.0, 0.01)
        for l in self.mlp:
            lim = math.sqrt(6.0 / (l.in_features + l.out_features))
            l.weight.data.uniform_(-lim, lim)
        lim = math.sqrt(3.0 / self.final.in_features)
        self.final.weight.data.uniform_(-lim, lim)

    def forward(self, u, i):
        mf = self.mf_user_embed(u) * self.mf_item_embed(i)
        x = torch.cat((self.mlp_user_embed(u), self.mlp_item_embed(i)), 1)
        for l in self.mlp:
            x = torch.nn.functional.dropout(torch.relu(l(x)), self.dropout, self.training)
        return self.final(torch.cat((mf, x), 1))


model = NeuMF(n_users, n_items).to(dev)
opt = torch.optim.Adam(model.parameters(), lr=0.0045, betas=(0.25, 0.5), eps=1e-8, fused=True)
scaler = torch.amp.GradScaler("cuda", enabled=a.amp)
crit = torch.nn.BCEWithLogitsLoss()

# Test lists sorted by item - 0.5 * label with the duplicate mask, once.
items = test[:, 1].view(-1, S)
_, order = torch.sort(items - test_lab * 0.5, dim=1)
t_users, t_items, t_labels = (torch.gather(t, 1, order) for t in (test[:, 0].view(-1, S), items, test_lab))
dup = torch.zeros_like(t_items, dtype=torch.bool)
dup[:, 1:] = t_items[:, 1:] == t_items[:, :-1]


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


for epoch in range(a.epochs):
    sync(); start = time.time()
    n = train.shape[0]
    neg_u = train[:, 0].repeat(a.negative_samples)
    neg_i = torch.randint(0, n_items, (n * a.negative_samples,), device=dev)
    users = torch.cat((train[:, 0], neg_u)); items_ = torch.cat((train[:, 1], neg_i))
    labels = torch.cat((train_lab, torch.zeros(n * a.negative_samples, device=dev)))
    perm = torch.randperm(users.shape[0], device=dev)
    users, items_, labels = users[perm], items_[perm], labels[perm]
    batches = (users.shape[0] + a.batch_size - 1) // a.batch_size - 1
    model.train()
    for b in range(batches):
        s = slice(b * a.batch_size, (b + 1) * a.batch_size)
        with torch.autocast(dev.type, dtype=torch.float16, enabled=a.amp):
            out = model(users[s], items_[s])
        loss = crit(out.float(), labels[s].view(-1, 1))
        scaler.scale(loss).backward()
        scaler.step(opt); scaler.update()
        opt.zero_grad(set_to_none=True)
    sync(); train_time = time.time() - start
    eval_start = time.time()
    model.eval()
    with torch.no_grad():
        sc = torch.cat([torch.sigmoid(model(u, i)) for u, i in zip(t_users.view(-1).split(a.valid_batch_size), t_items.view(-1).split(a.valid_batch_size))]).view(-1, S)
        sc[dup] = -1
        hr = (torch.gather(t_labels, 1, torch.topk(sc, 10)[1]) == 1).sum().item() / sc.shape[0]
    sync(); eval_time = time.time() - eval_start
    print(f"pytorch baseline epoch {epoch}: {n * (a.negative_samples + 1) / train_time:.0f} samples/s, HR@10 {hr:.4f},"
          f" eval {sc.numel() / eval_time:.0f} rows/s ({'amp' if a.amp else 'fp32/tf32'}, {dev})", flush=True)
