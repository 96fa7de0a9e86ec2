"""ncf_rs: Neural Collaborative Filtering (NeuMF, GMF, MLP, MF) from Python, on ncf-rs's Rust core.

The same library crates as the ncf-rs binaries, in this process beside PyTorch (one shared
libtorch, so tensors cross without copies):

    import ncf_rs
    ncf_rs.prepare("ratings.csv", "data/ml")                 # ncf-prepare
    ds = ncf_rs.Dataset("data/ml")                           # spec, sizes, id maps, tensors
    summary = ncf_rs.train("data/ml", model="neumf", epochs=3, checkpoint_dir="runs")  # ncf-train
    m = ncf_rs.Model.load("runs/model.pth", data="data/ml")  # any kind, widths from the file
    m.recommend([1, 2, 3], k=10)                             # pandas DataFrame
    m.score(users, items)                                    # torch tensor of probabilities
    m.recommend_for_history([318, 296, 593], k=10)           # people the model never met

Every error is an `ncf_rs.NcfError` (and the builtin you would catch: FileNotFoundError,
ValueError, KeyError, TypeError, OSError) with a message naming the file, line, key or argument.
See help(ncf_rs.train), help(ncf_rs.Model), docs/src/python.md.
"""

# libtorch is loaded by torch first, so the extension binds to the very libtorch (and
# libtorch_python) that `import torch` uses, whichever order the caller imports them in.
import torch as _torch

# The extension is built against PyTorch 2.11.0's C++ API (tch 0.24.0); another libtorch would
# fail to load it, or worse, load it and crash. Say so before trying.
if _torch.__version__.split("+")[0] != "2.11.0":
    raise ImportError(
        f"ncf_rs needs torch 2.11.0 (the libtorch it is built against); this Python has torch "
        f"{_torch.__version__} from {_torch.__file__}. Install torch==2.11.0 in this environment, "
        "or use the venv that `make setup` makes (.torch-venv)."
    )

from ._ncf_rs import (  # noqa: F401
    Dataset,
    Model,
    NcfError,
    NcfFileNotFoundError,
    NcfKeyError,
    NcfOSError,
    NcfTypeError,
    NcfValueError,
    __version__,
    prepare,
    train,
    transcode,
    verify,
)

__all__ = [
    "Dataset",
    "Model",
    "NcfError",
    "NcfFileNotFoundError",
    "NcfKeyError",
    "NcfOSError",
    "NcfTypeError",
    "NcfValueError",
    "prepare",
    "train",
    "transcode",
    "verify",
]
