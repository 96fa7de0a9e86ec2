"""What transcode.py computes for a CSV dataset, with pandas: for each mapping, the user/item pairs
and labels (chunk files concatenated, chunks side by side) and the cardinalities (max id + 1 over
all mappings). Prints JSON."""
import json, os, sys
import pandas as pd, yaml

d = sys.argv[1]
spec = yaml.safe_load(open(os.path.join(d, "feature_spec.yaml")))
ch = spec["channel_spec"]
user, item, label = ch["user_ch"][0], ch["item_ch"][0], ch["label_ch"][0]
out = {"mappings": {}}
for mapping, chunks in spec["source_spec"].items():
    frames = []
    for chunk in chunks:
        parts = [pd.read_csv(os.path.join(d, f), header=None, names=chunk["features"], skipinitialspace=True) for f in chunk["files"]]
        frames.append(pd.concat(parts, ignore_index=True))
    df = pd.concat(frames, axis=1)
    out["mappings"][mapping] = {
        "pairs": df[[user, item]].astype("int64").values.flatten().tolist(),
        "labels": df[label].astype("float32").tolist(),
    }
for name in (user, item):
    out[name] = int(max(max(m["pairs"][i::2]) for m, i in ((m, 0 if name == user else 1) for m in out["mappings"].values()))) + 1
print(json.dumps(out))
