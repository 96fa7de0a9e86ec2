"""Trains a small matrix-factorisation model (GMF: dot product of user and item embeddings, BCE with
4 random negatives per positive, Adam) on a prepared dataset with PyTorch, and prints the test
HR@10 computed with the reference's evaluation rules (duplicate mask, positive first). Evidence
that a dataset's structure is learnable; random ranking scores about 10 / series length."""
import sys
import torch

d = sys.argv[1]
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 8
torch.manual_seed(0)
load = lambda f: torch.load(f"{d}/{f}", weights_only=True)
train = load("train_data_0.pt")
test = load("test_data_0.pt")
labels = load("test_data_1.pt").flatten()
n_users = int(max(train[:, 0].max(), test[:, 0].max())) + 1
n_items = int(max(train[:, 1].max(), test[:, 1].max())) + 1
u_emb = torch.nn.Embedding(n_users, 32)
i_emb = torch.nn.Embedding(n_items, 32)
for e in (u_emb, i_emb):
    torch.nn.init.normal_(e.weight, 0, 0.01)
opt = torch.optim.Adam(list(u_emb.parameters()) + list(i_emb.parameters()), lr=0.01)
for epoch in range(epochs):
    users = train[:, 0].repeat(5)
    items = torch.cat([train[:, 1], torch.randint(0, n_items, (4 * len(train),))])
    y = torch.cat([torch.ones(len(train)), torch.zeros(4 * len(train))])
    perm = torch.randperm(len(users))
    for b in perm.split(8192):
        logit = (u_emb(users[b]) * i_emb(items[b])).sum(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logit, y[b])
        opt.zero_grad(); loss.backward(); opt.step()
with torch.no_grad():
    S = int((labels == 1).nonzero()[1]) if (labels == 1).sum() > 1 else len(labels)
    score = torch.sigmoid((u_emb(test[:, 0]) * i_emb(test[:, 1])).sum(1)).view(-1, S)
    items = test[:, 1].view(-1, S).float(); lab = labels.view(-1, S)
    # The reference's duplicate mask: sort by item - 0.5*label, mask an item equal to its left neighbour.
    order = torch.argsort(items - 0.5 * lab, dim=1)
    items_s = torch.gather(items, 1, order); score_s = torch.gather(score, 1, order); lab_s = torch.gather(lab, 1, order)
    dup = torch.zeros_like(items_s, dtype=torch.bool); dup[:, 1:] = items_s[:, 1:] == items_s[:, :-1]
    score_s[dup] = -1.0
    top = torch.topk(score_s, min(10, S), dim=1).indices
    hits = torch.gather(lab_s, 1, top).sum(1).clamp(max=1)
print(f"{hits.mean().item():.4f}")
