"""The validation split recomputed with pandas from the raw ratings, for parity tests.

usage: validation_oracle.py RATINGS DATASET
Prints JSON: which checks hold for the dataset ncf-prepare --validation wrote.

The rule, independently: per user, ratings in time order (ties in file order: a stable sort),
repeated (user, item) keeping the earliest; the last is the test positive, the one before it the
validation positive if the user has at least 3 items (else none, and it stays in train); train is
the rest. Validation lists: positive first, then negatives that are neither train items nor the
validation positive; test negatives likewise avoid both."""
import json, os, sys
import numpy as np
import pandas as pd
import torch

raw, data = sys.argv[1], sys.argv[2]
df = pd.read_csv(raw)
df.columns = ["user", "item", "rating", "timestamp"][: len(df.columns)]
df = df.sort_values(["user", "timestamp"], kind="stable")
df = df.drop_duplicates(["user", "item"], keep="first")
user_raw = torch.load(os.path.join(data, "user_ids.pt")).numpy()
item_raw = torch.load(os.path.join(data, "item_ids.pt")).numpy()
uidx = {u: k for k, u in enumerate(user_raw)}
iidx = {i: k for k, i in enumerate(item_raw)}
expect_val, expect_train, expect_test = {}, {}, {}
for user, g in df.groupby("user", sort=False):
    items = [iidx[i] for i in g["item"].tolist()]
    u = uidx[user]
    expect_test[u] = items[-1]
    if len(items) >= 3:
        expect_val[u] = items[-2]
        expect_train[u] = sorted(items[:-2])
    else:
        expect_train[u] = sorted(items[:-1])

tr = torch.load(os.path.join(data, "train_data_0.pt")).numpy()
va = torch.load(os.path.join(data, "validation_data_0.pt")).numpy()
val = torch.load(os.path.join(data, "validation_data_1.pt")).numpy().reshape(-1)
te = torch.load(os.path.join(data, "test_data_0.pt")).numpy()
spec = open(os.path.join(data, "feature_spec.yaml")).read()
S = 101 if "test_samples_per_series: 101" in spec else None
train = {}
for u, i in tr:
    train.setdefault(int(u), []).append(int(i))
lists = va.reshape(-1, S, 2)
labels = val.reshape(-1, S)
got_val = {int(l[0, 0]): int(l[0, 1]) for l in lists}
tests = te.reshape(-1, S, 2)
checks = {
    "validation_positives_equal": got_val == expect_val,
    "train_equal": {u: sorted(v) for u, v in train.items()} == {u: v for u, v in expect_train.items() if v},
    "test_positives_equal": {int(l[0, 0]): int(l[0, 1]) for l in tests} == expect_test,
    "labels_one_then_zeros": bool((labels[:, 0] == 1).all() and (labels[:, 1:] == 0).all()),
    "one_user_per_list": bool((lists[:, :, 0] == lists[:, :1, 0]).all()),
    "validation_negatives_avoid_train_and_positive": all(
        not (set(l[1:, 1].tolist()) & (set(train.get(int(l[0, 0]), [])) | {int(l[0, 1])})) for l in lists
    ),
    "test_negatives_avoid_train_and_validation_positive": all(
        not (set(l[1:, 1].tolist()) & (set(train.get(int(l[0, 0]), [])) | ({got_val[int(l[0, 0])]} if int(l[0, 0]) in got_val else set())))
        for l in tests
    ),
    "users_without_validation": len(expect_train) - len(expect_val),
}
print(json.dumps(checks))
