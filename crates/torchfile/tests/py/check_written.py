"""Loads files our writer produced with torch.load(weights_only=True) and compares them with the
expectation manifest the Rust test wrote: {file: [{key, dtype, shape, bin}]}. Prints one line per
problem and exits 1 on any."""
import json, os, sys
import torch

folder = sys.argv[1]
manifest = json.load(open(os.path.join(folder, "manifest.json")))
problems = []

def raw(t):
    # numpy has no bfloat16: reinterpret it as int16, bit for bit.
    c = t.detach().contiguous()
    return (c.view(torch.int16) if c.dtype == torch.bfloat16 else c).numpy().tobytes()

for fname, items in manifest.items():
    try:
        obj = torch.load(os.path.join(folder, fname), weights_only=True)
    except Exception as e:
        problems.append(f"{fname}: torch.load failed: {e}")
        continue
    if len(items) == 1 and items[0]["key"] is None:
        got = [(None, obj)]
    else:
        if type(obj).__name__ != "OrderedDict":
            problems.append(f"{fname}: expected an OrderedDict, got {type(obj).__name__}")
            continue
        got = list(obj.items())
    if [k for k, _ in got] != [i["key"] for i in items]:
        problems.append(f"{fname}: keys {[k for k, _ in got]} != {[i['key'] for i in items]}")
        continue
    for (key, t), exp in zip(got, items):
        if str(t.dtype) != exp["dtype"] or list(t.shape) != exp["shape"]:
            problems.append(f"{fname}[{key}]: {t.dtype} {list(t.shape)} != {exp['dtype']} {exp['shape']}")
        elif raw(t) != open(os.path.join(folder, exp["bin"]), "rb").read():
            problems.append(f"{fname}[{key}]: values differ")
        elif t.device.type != "cpu":
            problems.append(f"{fname}[{key}]: device {t.device}")
for p in problems:
    print(p)
print(f"checked {len(manifest)} files, {len(problems)} problems")
sys.exit(1 if problems else 0)
