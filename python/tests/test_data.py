"""ncf_rs.prepare / transcode / verify and Dataset, against the reference's own files."""
import shutil

import pytest
import torch

import ncf_rs


def pairs(ds, extra=()):
    """Every (user, item) a dataset holds as a positive (train rows and test positives), as keys."""
    keys = [ds.train["user"] * ds.items + ds.train["item"]]
    for mapping in ("test",) + tuple(extra):
        t = ds.mapping_tensors(mapping)
        hit = t["label"] == 1
        keys.append(t["user"][hit].long() * ds.items + t["item"][hit].long())
    return torch.sort(torch.cat(keys)).values


def test_prepare_writes_the_reference_dataset(prepared, reference_dir):
    # The reference's convert.py on the same ratings wrote reference_dir. Its unstable sort breaks
    # ties of a user's latest timestamp arbitrarily, so which of the tied items is the test
    # positive may differ; everything a user rated is in the same place either way. validation=True
    # also holds each user's second-latest item out of train (ours only).
    out, summary = prepared
    assert (summary["users"], summary["items"], summary["reused"]) == (610, 9724, False)
    assert summary["validation_rows"] == summary["test_rows"] == 610 * 101
    ours, theirs = ncf_rs.Dataset(out), ncf_rs.Dataset(reference_dir)
    assert torch.equal(ours.test["user"], theirs.test["user"].to(torch.int64))
    assert torch.equal(ours.test["label"] == 1, theirs.test["label"] == 1)
    assert torch.equal(pairs(ours, ["validation"]), pairs(theirs))


def test_prepare_without_validation_equals_the_reference(tmp_path, ratings, reference_dir):
    summary = ncf_rs.prepare(ratings, tmp_path / "plain")
    ours, theirs = ncf_rs.Dataset(tmp_path / "plain"), ncf_rs.Dataset(reference_dir)
    assert summary["train_rows"] == theirs.train["user"].numel()
    assert ours.mappings == theirs.mappings
    assert torch.equal(pairs(ours), pairs(theirs))
    for mapping in ("train", "test"):
        a, b = ours.mapping_tensors(mapping), theirs.mapping_tensors(mapping)
        assert list(a) == list(b)
        for feature in a:
            assert a[feature].shape == b[feature].shape and a[feature].dtype == b[feature].dtype
    # A second call reuses the folder with a warning, as ncf-prepare does; force=True rebuilds it;
    # asking for a validation split the folder lacks is an error, not a silent reuse.
    with pytest.warns(UserWarning, match="already prepared"):
        assert ncf_rs.prepare(ratings, tmp_path / "plain")["reused"] is True
    with pytest.raises(ncf_rs.NcfValueError, match="without validation=True"):
        ncf_rs.prepare(ratings, tmp_path / "plain", validation=True)
    assert ncf_rs.prepare(ratings, tmp_path / "plain", force=True)["reused"] is False


def test_verify(prepared, reference_dir):
    report = ncf_rs.verify(reference_dir)
    assert report["users"] == 610 and report["test_samples_per_series"] == 101
    assert report["rows"]["test"] == 610 * 101
    assert ncf_rs.verify(prepared[0])["rows"]["validation"] > 0


def test_verify_names_what_is_wrong(tmp_path, reference_dir):
    bad = tmp_path / "bad"
    shutil.copytree(reference_dir, bad)
    shutil.copy(bad / "train_data_0.pt", bad / "test_data_0.pt")  # test ids are now train's
    with pytest.raises(ncf_rs.NcfValueError, match="test"):
        ncf_rs.verify(bad)


def test_transcode_reference_example(tmp_path, shared):
    src = shared / "data" / "reference-examples" / "csv_conversion"
    summary = ncf_rs.transcode(src, tmp_path / "out")
    ds = ncf_rs.Dataset(tmp_path / "out")
    assert ds.users == summary["users"] and ds.items == summary["items"]
    for mapping, rows in summary["rows"].items():
        tensors = ds.mapping_tensors(mapping)
        assert all(t.shape[0] == rows for t in tensors.values())


def test_dataset_tensors_are_the_files(reference_dir):
    ds = ncf_rs.Dataset(reference_dir)
    assert (ds.users, ds.items, ds.test_samples_per_series) == (610, 9724, 101)
    assert ds.mappings == ["test", "train"]
    import yaml

    assert ds.spec == yaml.safe_load((reference_dir / "feature_spec.yaml").read_text())
    # The reference saved each chunk as its own .pt file; Dataset gives the same values.
    user_chunk = torch.load(reference_dir / "train_data_0.pt", map_location="cpu", weights_only=True)
    assert torch.equal(ds.train["user"], user_chunk[:, 0])
    assert torch.equal(ds.train["item"], user_chunk[:, 1])


def test_dataset_tensors_are_shared_not_copied(reference_dir):
    ds = ncf_rs.Dataset(reference_dir)
    first = ds.test["item"]
    assert first.data_ptr() == ds.test["item"].data_ptr()
    old = first[0].item()
    first[0] = 12345  # in place: the dataset in memory sees it
    assert ds.test["item"][0].item() == 12345
    first[0] = old


def test_dataset_id_maps(prepared, ratings):
    ds = ncf_rs.Dataset(prepared[0])
    raw_users = ds.user_ids
    assert isinstance(raw_users, torch.Tensor) and raw_users.numel() == ds.users
    # MovieLens ids, renumbered in sorted order: index 0 is the smallest userId.
    import pandas as pd

    frame = pd.read_csv(ratings)
    assert raw_users.tolist() == sorted(frame["userId"].unique().tolist())
    assert sorted(ds.item_ids.tolist()) == sorted(frame["movieId"].unique().tolist())
    for index in (0, 5, ds.users - 1):
        assert ds.user_index(int(raw_users[index])) == index
    with pytest.raises(KeyError, match="999999"):
        ds.user_index(999999)
    with pytest.raises(ncf_rs.NcfKeyError):
        ds.item_index("not-an-id")
    with pytest.raises(ncf_rs.NcfKeyError, match="no mapping"):
        ds.mapping_tensors("nope")


def test_errors_name_the_file(tmp_path, ratings):
    with pytest.raises(FileNotFoundError) as missing:
        ncf_rs.prepare(tmp_path / "missing.csv", tmp_path / "out")
    assert isinstance(missing.value, ncf_rs.NcfError) and "missing.csv" in str(missing.value)
    bad = tmp_path / "bad.csv"
    bad.write_text("userId,movieId,rating,timestamp\n1,2,3.0,100\n1,3,4.0\n")
    with pytest.raises(ncf_rs.NcfValueError, match=r"bad.csv:3"):
        ncf_rs.prepare(bad, tmp_path / "out2", format="ml-20m")
    assert not (tmp_path / "out2").exists()  # nothing half-written
    with pytest.raises(ValueError, match="format"):
        ncf_rs.prepare(ratings, tmp_path / "out3", format="ml-99m")
    with pytest.raises(ncf_rs.NcfFileNotFoundError):
        ncf_rs.Dataset(tmp_path)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ncf_rs.NcfValueError, match="force=True"):
        ncf_rs.prepare(ratings, tmp_path / "full")
