"""Shared fixtures: the real files in ../shared (MovieLens ml-latest-small, the reference's prepared
folder and checkpoint) and a dataset prepared and a model trained once per session by ncf_rs."""
import os
import pathlib

import pytest

import ncf_rs

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("NCF_SHARED_DIR", REPO.parent / "shared"))


@pytest.fixture(scope="session")
def shared():
    if not (SHARED / "data").is_dir():
        pytest.fail(f"the shared data folder is missing: {SHARED} (set NCF_SHARED_DIR)")
    return SHARED


@pytest.fixture(scope="session")
def reference_dir(shared):
    """The reference's own prepared ml-latest-small, its checkpoint and expected metrics."""
    return shared / "data" / "reference-prepared" / "ml-latest-small"


@pytest.fixture(scope="session")
def ratings(shared):
    return shared / "data" / "ml-latest-small" / "ratings.csv"


@pytest.fixture(scope="session")
def prepared(tmp_path_factory, ratings):
    """ml-latest-small prepared by ncf_rs.prepare, with a validation split (id maps included)."""
    out = tmp_path_factory.mktemp("prepared") / "ml-latest-small"
    summary = ncf_rs.prepare(ratings, out, validation=True)
    return out, summary


@pytest.fixture(scope="session")
def trained(tmp_path_factory, prepared):
    """A NeuMF trained two short epochs on the prepared dataset."""
    data, _ = prepared
    runs = tmp_path_factory.mktemp("runs")
    events = []
    summary = ncf_rs.train(
        data,
        model="neumf",
        epochs=2,
        batch_size=16384,
        factors=16,
        layers=[64, 32, 16],
        learning_rate=0.002,
        seed=3,
        checkpoint_dir=runs,
        log_path=runs / "log.json",
        device="cpu",
        progress=events.append,
    )
    return data, runs, summary, events
