"""What transcode.py computes for a CSV dataset, with pandas: for each mapping, the user/item pairs
and labels (chunk files concatenated, chunks side by side) and the cardinalities (max id + 1 over
all mappings). Prints JSON. With a second argument (a transcoded folder), also says for each
mapping whether torch.load(weights_only=True) of its tensor files gives the same tensors and every
zip record's CRC-32 is right."""
import json, os, sys, zipfile
import torch
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
if len(sys.argv) > 2:
    out["torch_load"] = {}
    for mapping, m in out["mappings"].items():
        paths = [os.path.join(sys.argv[2], f"{mapping}_data_{k}.pt") for k in (0, 1)]
        bad = [p for p in paths if zipfile.ZipFile(p).testzip() is not None]
        pairs, labels = (torch.load(p, weights_only=True) for p in paths)
        want_pairs = torch.tensor(m["pairs"], dtype=torch.int64).reshape(-1, 2)
        want_labels = torch.tensor(m["labels"], dtype=torch.float32).reshape(-1, 1)
        same = torch.equal(pairs, want_pairs) and torch.equal(labels, want_labels)
        out["torch_load"][mapping] = f"bad CRC in {bad}" if bad else ("equal" if same else "different")
print(json.dumps(out))
