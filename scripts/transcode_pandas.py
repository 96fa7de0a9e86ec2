#!/usr/bin/env python3
"""A pandas re-implementation of the reference transcode.py's computation (reference-semantics.md
§3), used only as the baseline of scripts/bench-transcode.sh: the reference script itself is not in
this repository. Per mapping: read each chunk's CSV files with pandas (no header), concatenate files
as rows and chunks as columns, take max id + 1 for `auto` cardinalities, and torch.save
<mapping>_data_0.pt (int64 user, item) and <mapping>_data_1.pt (float32 label) plus the spec.

usage: transcode_pandas.py IN_DIR OUT_DIR"""
import os, sys
import pandas as pd, torch, yaml

src, dst = sys.argv[1:3]
spec = yaml.safe_load(open(os.path.join(src, "feature_spec.yaml")))
ch = spec["channel_spec"]
user, item, label = ch["user_ch"][0], ch["item_ch"][0], ch["label_ch"][0]
os.makedirs(dst, exist_ok=True)
frames = {}
for mapping, chunks in spec["source_spec"].items():
    parts = []
    for chunk in chunks:
        files = [pd.read_csv(os.path.join(src, f), header=None, names=chunk["features"]) for f in chunk["files"]]
        parts.append(pd.concat(files, ignore_index=True))
    frames[mapping] = pd.concat(parts, axis=1)
for name in (user, item):
    largest = max(int(df[name].max()) for df in frames.values())
    meta = spec["feature_spec"][name]
    if meta["cardinality"] == "auto":
        meta["cardinality"] = largest + 1
    elif meta["cardinality"] < largest + 1:
        sys.exit("Specified cardinality conflicts data")
    meta["dtype"] = "torch.int64"
spec["feature_spec"][label] = {"dtype": "torch.float32"}
for mapping, df in frames.items():
    torch.save(torch.tensor(df[[user, item]].values, dtype=torch.int64), os.path.join(dst, f"{mapping}_data_0.pt"))
    torch.save(torch.tensor(df[[label]].values, dtype=torch.float32), os.path.join(dst, f"{mapping}_data_1.pt"))
    spec["source_spec"][mapping] = [
        {"type": "torch_tensor", "features": [user, item], "files": [f"{mapping}_data_0.pt"]},
        {"type": "torch_tensor", "features": [label], "files": [f"{mapping}_data_1.pt"]},
    ]
with open(os.path.join(dst, "feature_spec.yaml"), "w") as f:
    print(yaml.dump(spec), file=f)
