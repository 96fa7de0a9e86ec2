"""Dataset variants like the reference's test_dataset.sh, made from a prepared dataset with torch and
pyyaml (so the files are torch.save's own). Writes one folder per variant under OUT.

usage: make_variants.py BASE OUT"""
import copy, os, sys
import torch, yaml

base, out = sys.argv[1:3]
spec = yaml.safe_load(open(os.path.join(base, "feature_spec.yaml")))
S = spec["metadata"]["test_samples_per_series"]
n_users = spec["feature_spec"]["user"]["cardinality"]
n_items = spec["feature_spec"]["item"]["cardinality"]
load = lambda f: torch.load(os.path.join(base, f), weights_only=True)
train_ids, train_lab = load("train_data_0.pt"), load("train_data_1.pt")
test_ids, test_lab = load("test_data_0.pt"), load("test_data_1.pt")


def write(name, spec, train=(train_ids, train_lab), test=(test_ids, test_lab)):
    d = os.path.join(out, name)
    os.makedirs(d)
    for m, (ids, lab) in (("train", train), ("test", test)):
        torch.save(ids.contiguous(), os.path.join(d, f"{m}_data_0.pt"))
        torch.save(lab.contiguous(), os.path.join(d, f"{m}_data_1.pt"))
    with open(os.path.join(d, "feature_spec.yaml"), "w") as f:
        yaml.safe_dump(spec, f)


# A user's test series twice (more series than users), and half the users' series (fewer).
write("more_series", spec, test=(torch.cat([test_ids, test_ids[:S]]), torch.cat([test_lab, test_lab[:S]])))
half = (n_users // 2) * S
write("fewer_series", spec, test=(test_ids[:half], test_lab[:half]))
# Train rows of only the lower half of the users and items: fewer users and items than the data.
keep = (train_ids[:, 0] < n_users // 2) & (train_ids[:, 1] < n_items // 2)
write("fewer_users_items", spec, train=(train_ids[keep], train_lab[keep]))
# Cardinalities larger than any id: users and items the data never mentions.
s = copy.deepcopy(spec)
s["feature_spec"]["user"]["cardinality"] = n_users + 50
s["feature_spec"]["item"]["cardinality"] = n_items + 70
write("extra_users_items", s)
# Other feature names.
s = copy.deepcopy(spec)
s["feature_spec"] = {f"{k}_2": v for k, v in spec["feature_spec"].items()}
s["channel_spec"] = {ch: [f"{f}_2" for f in fs] for ch, fs in spec["channel_spec"].items()}
for chunks in s["source_spec"].values():
    for c in chunks:
        c["features"] = [f"{f}_2" for f in c["features"]]
write("other_names", s)
# 0, 10 and 200 test negatives per series: the positive then fresh random items.
g = torch.Generator().manual_seed(3)
pos = test_ids.view(-1, S, 2)[:, 0, :]
for negs in (0, 10, 200):
    rows = []
    for u, i in pos.tolist():
        rows.append([u, i])
        rows.extend([u, int(x)] for x in torch.randint(0, n_items, (negs,), generator=g))
    ids = torch.tensor(rows, dtype=torch.int64)
    lab = torch.zeros(len(rows), 1, dtype=torch.float32)
    lab[:: negs + 1] = 1
    s = copy.deepcopy(spec)
    s["metadata"]["test_samples_per_series"] = negs + 1
    write(f"test_negatives_{negs}", s, test=(ids, lab))
