"""Type stubs of the extension module ncf_rs._ncf_rs (re-exported by ncf_rs)."""
from collections import OrderedDict
from os import PathLike
from typing import Any, Callable, Iterable, Literal, Optional, Sequence, Union

import numpy as np
import pandas as pd
import torch

__version__: str

StrPath = Union[str, PathLike[str]]
RawId = Union[int, str]
Ids = Union[torch.Tensor, np.ndarray, Sequence[int]]

class NcfError(Exception):
    """Base class of every error ncf_rs raises."""

class NcfFileNotFoundError(NcfError, FileNotFoundError):
    """A file or folder ncf_rs was given does not exist."""

class NcfOSError(NcfError, OSError):
    """Reading or writing a file failed."""

class NcfValueError(NcfError, ValueError):
    """Bad input: a malformed file, an option out of range, a model that does not fit its dataset."""

class NcfKeyError(NcfError, KeyError):
    """An id the dataset does not know (a user, an item)."""

class NcfTypeError(NcfError, TypeError):
    """An argument of the wrong type (e.g. a tensor of another dtype)."""

def prepare(
    path: StrPath,
    output: StrPath,
    format: Optional[Literal["ml-20m", "ml-1m", "ml-10m", "ml-100k", "like-movielens"]] = None,
    validation: bool = False,
    seed: int = 1,
    negatives: int = 100,
    force: bool = False,
) -> dict[str, Any]:
    """Raw ratings -> a feature-spec dataset folder (ncf-prepare). Returns users, items, train_rows,
    test_rows, validation_rows, ratings, duplicates, format, seconds, output, reused."""

def transcode(
    path: StrPath,
    output: StrPath,
    feature_spec_in: str = "feature_spec.yaml",
    feature_spec_out: str = "feature_spec.yaml",
) -> dict[str, Any]:
    """A CSV feature-spec dataset -> PyTorch tensor files (ncf-transcode). Returns rows, users,
    items, spec."""

def verify(dir: StrPath, template: Optional[StrPath] = None) -> dict[str, Any]:
    """Checks a prepared dataset (ncf-prepare verify). Returns rows, users, items,
    test_samples_per_series."""

def train(
    data: StrPath,
    model: Optional[Literal["neumf", "gmf", "mlp", "mf"]] = None,
    *,
    epochs: int = 30,
    batch_size: int = 1048576,
    valid_batch_size: int = 1048576,
    factors: int = 64,
    layers: Sequence[int] = (256, 256, 128, 64),
    negative_samples: int = 4,
    learning_rate: float = 0.0045,
    topk: int = 10,
    seed: Optional[int] = None,
    threshold: float = 1.0,
    beta1: float = 0.25,
    beta2: float = 0.5,
    eps: float = 1e-8,
    dropout: float = 0.5,
    checkpoint_dir: Optional[StrPath] = "/data/checkpoints/",
    load_checkpoint_path: Optional[StrPath] = None,
    mode: Literal["train", "test"] = "train",
    grads_accumulated: int = 1,
    amp: bool = False,
    tf32: bool = True,
    cpu_matmul: Literal["auto", "onednn", "mkl"] = "auto",
    eval: Literal["sampled", "full"] = "sampled",
    eval_users: Optional[int] = None,
    patience: Optional[int] = None,
    log_path: Optional[StrPath] = "log.json",
    device: str = "auto",
    resume: Optional[StrPath] = None,
    pretrained_gmf: Optional[StrPath] = None,
    pretrained_mlp: Optional[StrPath] = None,
    alpha: float = 0.5,
    feature_spec_file: str = "feature_spec.yaml",
    progress: Union[None, bool, Callable[[dict[str, Any]], None]] = None,
) -> dict[str, Any]:
    """Trains and evaluates a model (ncf-train). Returns model, seed, epochs, best_epoch, best_hr,
    best_ndcg, selected_by, train_throughput, eval_throughput, checkpoint, log,
    reached_threshold, stopped_early. Ctrl-C raises KeyboardInterrupt after the current step."""

class Dataset:
    """A prepared dataset folder: spec, sizes, id maps, mappings as torch tensors."""

    def __init__(self, dir: StrPath, feature_spec: str = "feature_spec.yaml") -> None: ...
    @property
    def path(self) -> str: ...
    @property
    def users(self) -> int: ...
    @property
    def items(self) -> int: ...
    @property
    def test_samples_per_series(self) -> int: ...
    @property
    def spec(self) -> dict[str, Any]: ...
    @property
    def mappings(self) -> list[str]: ...
    @property
    def train(self) -> Optional[dict[str, torch.Tensor]]: ...
    @property
    def test(self) -> Optional[dict[str, torch.Tensor]]: ...
    @property
    def validation(self) -> Optional[dict[str, torch.Tensor]]: ...
    def mapping_tensors(self, name: str) -> dict[str, torch.Tensor]: ...
    @property
    def user_ids(self) -> Union[torch.Tensor, list[str], None]: ...
    @property
    def item_ids(self) -> Union[torch.Tensor, list[str], None]: ...
    def user_index(self, raw: RawId) -> int: ...
    def item_index(self, raw: RawId) -> int: ...

class Model:
    """A trained NeuMF, GMF, MLP or MF, its kind and widths read from the checkpoint."""

    @staticmethod
    def load(checkpoint: StrPath, data: Optional[StrPath] = None, device: str = "cpu") -> "Model": ...
    @property
    def kind(self) -> Literal["neumf", "gmf", "mlp", "mf"]: ...
    @property
    def users(self) -> int: ...
    @property
    def items(self) -> int: ...
    @property
    def parameter_count(self) -> int: ...
    @property
    def device(self) -> str: ...
    @property
    def bf16_candidates(self) -> bool:
        """Two-stage ranking: bfloat16 all-item scoring picks 4k+32 candidates, float32 ranks them
        (NeuMF and MLP on a CPU with bfloat16 instructions; setting True raises ValueError elsewhere)."""
    @bf16_candidates.setter
    def bf16_candidates(self, on: bool) -> None: ...
    def score(self, users: Ids, items: Ids, out: Optional[torch.Tensor] = None) -> torch.Tensor: ...
    def recommend(self, users: Union[RawId, Iterable[RawId]], k: int = 10, exclude_seen: bool = True) -> pd.DataFrame: ...
    def recommend_for_history(
        self,
        items: Union[RawId, Iterable[RawId]],
        k: int = 10,
        user: Optional[RawId] = None,
        exclude_seen: bool = True,
        steps: int = 30,
        negatives: int = 4,
        learning_rate: float = 0.1,
        prior_weight: float = 1.0,
        seed: int = 0,
    ) -> pd.DataFrame: ...
    def state_dict(self) -> "OrderedDict[str, torch.Tensor]": ...
