"""torch.load(map_location='cpu', weights_only=True)s each FILE and writes its tensors' contiguous
bytes plus a manifest.json ({basename: [{key, dtype, shape, bin}]}) into OUT, for Rust to compare."""
import json, os, sys
import torch

out, files = sys.argv[1], sys.argv[2:]
manifest = {}

def raw(t):
    # numpy has no bfloat16: reinterpret it as int16, bit for bit.
    c = t.detach().contiguous()
    return (c.view(torch.int16) if c.dtype == torch.bfloat16 else c).numpy().tobytes()

for path in files:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    entries = [(None, obj)] if isinstance(obj, torch.Tensor) else list(obj.items())
    name = os.path.basename(path)
    items = []
    for i, (key, t) in enumerate(entries):
        b = f"{name}.{i}.bin"
        with open(os.path.join(out, b), "wb") as f:
            f.write(raw(t))
        items.append({"key": key, "dtype": str(t.dtype), "shape": list(t.shape), "bin": b})
    manifest[name] = items
with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f)
