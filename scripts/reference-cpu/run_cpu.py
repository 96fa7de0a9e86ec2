"""Runs NVIDIA's reference ncf.py (or inference.py) on the CPU, unchanged, with its CUDA calls
redirected.

    python3 run_cpu.py NCF_DIR [ncf.py flags...]
    NCF_REFERENCE_SCRIPT=inference.py python3 run_cpu.py NCF_DIR [inference.py flags...]

NCF_DIR is a checkout of DeepLearningExamples' PyTorch/Recommendation/NCF (not part of this
repository). What is redirected, and nothing else:
- `.cuda()` on tensors and modules returns them as they are; `torch.cuda.synchronize`,
  `set_device` and `empty_cache` do nothing;
- `torch.load` maps every tensor to the CPU and `torch.randperm` draws on the CPU (dataloading.py
  asks for `cuda:LOCAL_RANK`); `torch.cuda.LongTensor` (inference.py's random ids) is the CPU's;
- `apex.optimizers.FusedAdam` and `dllogger`, which are not on PyPI, come from `shim/`: torch's
  own Adam (what runs on a CPU) and a DLLogger that prints and appends `DLLL {json}` lines.
AMP (`--amp`) and multi-process runs are not supported this way.
"""
import os
import runpy
import sys

import torch

ncf_dir = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.join(here, "shim"), ncf_dir]

torch.cuda.synchronize = lambda *a, **k: None
torch.cuda.set_device = lambda *a, **k: None
torch.cuda.empty_cache = lambda *a, **k: None
torch.Tensor.cuda = lambda self, *a, **k: self
torch.cuda.LongTensor = torch.LongTensor
torch.nn.Module.cuda = lambda self, *a, **k: self

_load, _randperm = torch.load, torch.randperm


def _load_on_cpu(*args, **kwargs):
    kwargs["map_location"] = "cpu"
    return _load(*args, **kwargs)


def _randperm_on_cpu(*args, **kwargs):
    kwargs["device"] = "cpu"
    return _randperm(*args, **kwargs)


torch.load, torch.randperm = _load_on_cpu, _randperm_on_cpu

script = os.environ.get("NCF_REFERENCE_SCRIPT", "ncf.py")
sys.argv = [script] + sys.argv[2:]
runpy.run_path(os.path.join(ncf_dir, script), run_name="__main__")
