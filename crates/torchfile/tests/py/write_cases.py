"""Writes .pt files with torch.save for the Rust reader to check, each with the expected contiguous
bytes beside it (<name>.bin) and a manifest.json: {file: [{key, dtype, shape, bin}]}."""
import json, os, sys, collections
import torch

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
manifest = {}

def raw(t):
    # numpy has no bfloat16: reinterpret it as int16, bit for bit.
    c = t.detach().contiguous()
    return (c.view(torch.int16) if c.dtype == torch.bfloat16 else c).numpy().tobytes()

def record(fname, entries):
    items = []
    for key, t in entries:
        b = f"{fname}.{key or 'tensor'}.bin"
        with open(os.path.join(out, b), "wb") as f:
            f.write(raw(t))
        items.append({"key": key, "dtype": str(t.dtype), "shape": list(t.shape), "bin": b})
    manifest[fname] = items

def base(dtype, shape=(3, 4)):
    n = 1
    for d in shape: n *= d
    if dtype == torch.bool:
        return (torch.arange(n) % 3 == 0).reshape(shape)
    if dtype.is_floating_point:
        return (torch.randn(n) * 100).to(dtype).reshape(shape)
    info = torch.iinfo(dtype)
    return torch.randint(info.min, info.max, (n,), dtype=torch.int64).to(dtype).reshape(shape)

dtypes = [torch.int64, torch.int32, torch.int16, torch.int8, torch.uint8, torch.bool,
          torch.float64, torch.float32, torch.float16, torch.bfloat16]
for dt in dtypes:
    name = str(dt).split(".")[1]
    t = base(dt)
    torch.save(t, os.path.join(out, f"{name}.pt")); record(f"{name}.pt", [(None, t)])
    tt = t.t()  # non-contiguous view of the whole storage
    torch.save(tt, os.path.join(out, f"{name}_transposed.pt")); record(f"{name}_transposed.pt", [(None, tt)])

big = base(torch.int64, (10, 6))
off = big[3:7]                       # storage offset 18, contiguous
torch.save(off, os.path.join(out, "offset.pt")); record("offset.pt", [(None, off)])
strided = big[1:9:3, ::2]            # offset and non-unit strides in both dims
torch.save(strided, os.path.join(out, "strided.pt")); record("strided.pt", [(None, strided)])
col = big[:, 1]                      # one column of a 2-D tensor
torch.save(col, os.path.join(out, "column.pt")); record("column.pt", [(None, col)])
scalar = torch.tensor(3.5, dtype=torch.float64)
torch.save(scalar, os.path.join(out, "scalar.pt")); record("scalar.pt", [(None, scalar)])
empty = torch.zeros((0, 2), dtype=torch.int64)
torch.save(empty, os.path.join(out, "empty.pt")); record("empty.pt", [(None, empty)])
expanded = torch.arange(3, dtype=torch.float32).reshape(3, 1).expand(3, 5)   # stride 0
torch.save(expanded, os.path.join(out, "expanded.pt")); record("expanded.pt", [(None, expanded)])

shared_base = base(torch.float32, (4, 5))
shared = collections.OrderedDict([("whole", shared_base), ("rows", shared_base[1:3]), ("col", shared_base[:, 2])])
torch.save(shared, os.path.join(out, "shared.pt")); record("shared.pt", list(shared.items()))

class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(7, 3)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(6, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
        self.norm = torch.nn.BatchNorm1d(2)
net = Net()
sd = net.state_dict()
torch.save(sd, os.path.join(out, "state_dict.pth")); record("state_dict.pth", list(sd.items()))
ddp = collections.OrderedDict(("module." + k, v) for k, v in sd.items())
ddp._metadata = sd._metadata
torch.save(ddp, os.path.join(out, "ddp_state_dict.pth")); record("ddp_state_dict.pth", list(ddp.items()))
plain = {"b": base(torch.int32, (2,)), "a": base(torch.float16, (2, 2))}
torch.save(plain, os.path.join(out, "plain_dict.pt")); record("plain_dict.pt", list(plain.items()))
params = collections.OrderedDict(net.named_parameters())   # nn.Parameter -> _rebuild_parameter
torch.save(params, os.path.join(out, "parameters.pt")); record("parameters.pt", list(params.items()))

with open(os.path.join(out, "manifest.json"), "w") as f:
    json.dump(manifest, f, indent=1)
