"""Compares a dataset prepared by ncf-prepare (OURS) with the reference's (REF) for the same raw
ratings file (RAW, ml-20m format), and prints a JSON report for the Rust test to assert on."""
import json, sys
import numpy as np
import pandas as pd
import torch, yaml

ref, ours, raw = sys.argv[1:4]
load = lambda d, f: torch.load(f"{d}/{f}", map_location="cpu", weights_only=True)
report = {}

spec_ref = yaml.safe_load(open(f"{ref}/feature_spec.yaml"))
spec_ours = yaml.safe_load(open(f"{ours}/feature_spec.yaml"))
# The spec is the reference's exactly: the id maps sit beside it under fixed names, not in it.
report["spec_equal"] = spec_ref == spec_ours

files = ["train_data_0.pt", "train_data_1.pt", "test_data_0.pt", "test_data_1.pt"]
R = {f: load(ref, f) for f in files}
O = {f: load(ours, f) for f in files}
report["shapes_dtypes_equal"] = all(R[f].shape == O[f].shape and R[f].dtype == O[f].dtype for f in files)

def grouped_user_order(t):
    u = t[:, 0].numpy()
    return bool((np.diff(u) >= 0).all())
report["train_grouped_by_user_ref"] = grouped_user_order(R["train_data_0.pt"])
report["train_grouped_by_user_ours"] = grouped_user_order(O["train_data_0.pt"])
rt = R["train_data_0.pt"].numpy(); ot = O["train_data_0.pt"].numpy()
report["train_labels_all_one"] = bool((O["train_data_1.pt"] == 1).all())

S = spec_ours["metadata"]["test_samples_per_series"]
rtest = R["test_data_0.pt"].numpy().reshape(-1, S, 2); otest = O["test_data_0.pt"].numpy().reshape(-1, S, 2)
report["test_users_in_order"] = bool((otest[:, 0, 0] == np.arange(len(otest))).all() and (otest[:, :, 0] == otest[:, :1, 0]).all())
olab = O["test_data_1.pt"].numpy().reshape(-1, S)
report["test_labels_one_then_zeros"] = bool((olab[:, 0] == 1).all() and (olab[:, 1:] == 0).all())
differ = np.nonzero(rtest[:, 0, 1] != otest[:, 0, 1])[0]
report["test_positives_differing"] = int(len(differ))

# Explain each difference: both positives must be rated at the user's latest timestamp (a tie the
# reference's unstable sort breaks arbitrarily).
df = pd.read_csv(raw)
users, _ = pd.factorize(df["userId"]); items, _ = pd.factorize(df["movieId"])
df = pd.DataFrame({"u": users, "i": items, "t": df["timestamp"]})
last = df.groupby("u")["t"].max()
latest = df[df["t"] == df["u"].map(last)]
ties = latest.groupby("u").size()
report["users_with_tied_latest"] = int((ties > 1).sum())
explained = 0
for u in differ:
    at_latest = set(latest[latest["u"] == u]["i"])
    explained += int(rtest[u, 0, 1] in at_latest and otest[u, 0, 1] in at_latest)
report["differences_explained_by_ties"] = explained

# Train rows: the same multiset once each differing user's two positives are swapped back, i.e.
# train + test positive is the same multiset of (user, item) on both sides.
code = lambda u, i: u.astype(np.int64) * 10_000_000 + i
with_pos = lambda train, test: np.sort(np.concatenate([code(train[:, 0], train[:, 1]), code(test[:, 0, 0], test[:, 0, 1])]))
report["train_plus_positives_same_multiset"] = bool(np.array_equal(with_pos(rt, rtest), with_pos(ot, otest)))
only_ref = np.setdiff1d(code(rt[:, 0], rt[:, 1]), code(ot[:, 0], ot[:, 1]))
report["train_rows_only_in_ref_are_our_positives"] = bool(set(only_ref) == set(code(otest[differ, 0, 0], otest[differ, 0, 1])))

# Negatives: in range, never one of the user's train items.
n_items = spec_ours["feature_spec"]["item"]["cardinality"]
train_sets = pd.DataFrame(ot, columns=["u", "i"]).groupby("u")["i"].apply(set)
neg = otest[:, 1:, 1]
report["negatives_in_range"] = bool(((neg >= 0) & (neg < n_items)).all())
report["negatives_outside_train"] = bool(all(not (set(neg[u]) & train_sets.get(u, set())) for u in range(len(neg))))
# The id maps: position = index, value = raw id, in first-appearance order.
raw_df = pd.read_csv(raw)
report["user_map_ok"] = bool(np.array_equal(load(ours, "user_ids.pt").numpy(), pd.unique(raw_df["userId"])))
report["item_map_ok"] = bool(np.array_equal(load(ours, "item_ids.pt").numpy(), pd.unique(raw_df["movieId"])))
print(json.dumps(report))
