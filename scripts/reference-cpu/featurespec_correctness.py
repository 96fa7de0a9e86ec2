"""Runs NVIDIA's test_featurespec_correctness.py unchanged, on the CPU.

    python3 featurespec_correctness.py NCF_DIR DATASET/feature_spec.yaml TEMPLATE.yaml

NCF_DIR is a checkout of DeepLearningExamples' PyTorch/Recommendation/NCF (not part of this
repository). The only thing redirected: `torch.load` maps tensors to the CPU (the script's
TorchTensorDataset asks for `cuda:0`). Exits non-zero, with the script's assertion, when a check fails.
"""
import os
import runpy
import sys

import torch

ncf_dir = os.path.abspath(sys.argv[1])
sys.path.insert(0, ncf_dir)
_load = torch.load


def _load_on_cpu(*args, **kwargs):
    kwargs["map_location"] = "cpu"
    return _load(*args, **kwargs)


torch.load = _load_on_cpu
sys.argv = ["test_featurespec_correctness.py"] + sys.argv[2:]
runpy.run_path(os.path.join(ncf_dir, "test_featurespec_correctness.py"), run_name="__main__")
print("test_featurespec_correctness.py: all four checks passed")
