"""ncf_rs.Model against PyTorch: the reference's checkpoint scored by a textbook PyTorch NeuMF."""
import pathlib
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import ncf_rs
from oracle import neumf_of


@pytest.fixture(scope="module")
def reference(reference_dir):
    model = ncf_rs.Model.load(reference_dir / "reference_model.pth", data=reference_dir)
    state = torch.load(reference_dir / "reference_model.pth", map_location="cpu", weights_only=True)
    return model, neumf_of(state), ncf_rs.Dataset(reference_dir)


def test_load_reads_kind_and_widths(reference):
    m, _, ds = reference
    assert (m.kind, m.users, m.items, m.device) == ("neumf", ds.users, ds.items, "cpu")
    assert m.parameter_count == 2091201
    assert "neumf" in repr(m)


def test_score_equals_pytorch_forward(reference):
    m, torch_model, ds = reference
    users, items = ds.test["user"], ds.test["item"]
    ours = m.score(users, items)
    with torch.no_grad():
        theirs = torch.sigmoid(torch_model(users, items)).view(-1)
    assert ours.dtype == torch.float32 and ours.shape == theirs.shape
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0), (ours - theirs).abs().max()
    # numpy arrays and lists are taken too (numpy through torch.as_tensor, without a copy).
    assert torch.allclose(m.score(users[:50].numpy(), np.asarray(items[:50])), ours[:50])
    assert torch.allclose(m.score(users[:3].tolist(), items[:3].tolist()), ours[:3])


def test_score_under_inference_mode_and_no_grad(reference):
    # Score's batch is split across libtorch's threads, which start in libtorch's defaults: the
    # caller's inference mode (its output an inference tensor) and grad mode must reach them.
    m, torch_model, ds = reference
    users, items = ds.test["user"][:2048], ds.test["item"][:2048]
    plain = m.score(users, items)
    with torch.inference_mode():
        inference = m.score(users, items)
    with torch.no_grad():
        no_grad = m.score(users, items)
        theirs = torch.sigmoid(torch_model(users, items)).view(-1)
    assert inference.is_inference() and not plain.is_inference()
    for got in (inference, no_grad):
        assert torch.allclose(got, plain, atol=1e-6, rtol=0), (got - plain).abs().max()
    assert torch.allclose(plain, theirs, atol=1e-5, rtol=0)


def test_score_writes_into_out(reference):
    m, _, ds = reference
    users, items = ds.test["user"][:300], ds.test["item"][:300]
    out = torch.full((300,), -1.0)
    got = m.score(users, items, out=out)
    assert got is out and got.data_ptr() == out.data_ptr()
    assert torch.allclose(out, m.score(users, items))
    with pytest.raises(TypeError, match="out: expected a float32 tensor of shape \\[300\\]"):
        m.score(users, items, out=torch.zeros(300, dtype=torch.float64))


def test_state_dict_loads_into_pytorch_and_shares_memory(reference_dir):
    # A model of its own: the test changes parameters through the views.
    m = ncf_rs.Model.load(reference_dir / "reference_model.pth")
    torch_model = neumf_of(torch.load(reference_dir / "reference_model.pth", map_location="cpu", weights_only=True))
    ds = ncf_rs.Dataset(reference_dir)
    m.score(ds.test["user"][:10], ds.test["item"][:10])  # the first-layer tables now exist
    state = m.state_dict()
    assert list(state) == list(torch_model.state_dict())
    fresh = neumf_of({k: torch.zeros_like(v) for k, v in state.items()})
    fresh.load_state_dict(state)  # strict: every key and shape PyTorch's
    users, items = ds.test["user"][:200], ds.test["item"][:200]
    with torch.no_grad():
        assert torch.allclose(torch.sigmoid(fresh(users, items)).view(-1), m.score(users, items), atol=1e-5)
    # Views of the model's own memory: the same pointer each call, and a change made through
    # them is the model's (restored after).
    bias = state["final.bias"]
    assert bias.data_ptr() == m.state_dict()["final.bias"].data_ptr()
    before = m.score(users, items)
    saved = bias.clone()
    bias.add_(5.0)
    assert (m.score(users, items) > before).all()
    bias.copy_(saved)
    assert torch.equal(m.score(users, items), before)
    # The first MLP layer too: scores follow it (tables made before the views went out are not
    # used any more), as PyTorch's do.
    state["mlp.0.bias"].add_(0.5)
    torch_model.mlp[0].bias.data.add_(0.5)
    with torch.no_grad():
        theirs = torch.sigmoid(torch_model(users, items)).view(-1)
    assert torch.allclose(m.score(users, items), theirs, atol=1e-5)
    assert not torch.allclose(before, theirs, atol=1e-3)


def test_recommend_equals_pytorch_top_k(reference):
    m, torch_model, ds = reference
    frame = m.recommend([0, 7, 42], k=10)
    assert list(frame.columns) == ["user", "rank", "item", "score"]
    assert frame["rank"].tolist() == list(range(1, 11)) * 3
    train_u, train_i = ds.train["user"], ds.train["item"]
    for user in (0, 7, 42):
        with torch.no_grad():
            all_items = torch.arange(ds.items)
            scores = torch.sigmoid(torch_model(torch.full_like(all_items, user), all_items)).view(-1)
        scores[train_i[train_u == user]] = -1.0  # their train items left out
        top = torch.topk(scores, 10)
        got = frame[frame["user"] == user]
        assert got["item"].tolist() == top.indices.tolist()
        assert np.allclose(got["score"].to_numpy(), top.values.numpy(), atol=1e-5)
    kept = m.recommend(0, k=5, exclude_seen=False)
    assert len(kept) == 5


def test_bf16_candidates_give_float32_lists(reference, reference_dir):
    m, _, _ = reference
    assert m.bf16_candidates is False
    alone = ncf_rs.Model.load(reference_dir / "reference_model.pth")
    with pytest.raises(ValueError, match="needs the dataset"):
        alone.bf16_candidates = True
    try:
        m.bf16_candidates = True
    except ValueError as e:
        assert "bfloat16 instructions" in str(e)
        pytest.skip("this CPU lacks bfloat16 instructions (the refusal is checked)")
    try:
        assert m.bf16_candidates is True
        users = [0, 7, 42, 300]
        got = m.recommend(users, k=10)
        m.bf16_candidates = False
        want = m.recommend(users, k=10)
        for user in users:
            g, w = got[got["user"] == user], want[want["user"] == user]
            # float32 ranks the candidates: the same items, float32's scores (to rounding).
            assert set(g["item"]) == set(w["item"])
            assert (g["score"].diff().dropna() <= 0).all()  # ranked, best first
            by_item = dict(zip(w["item"], w["score"]))
            assert np.allclose(g["score"].to_numpy(), [by_item[i] for i in g["item"]], atol=2e-6)
    finally:
        m.bf16_candidates = False


def test_recommend_in_raw_ids(trained):
    data, runs, _, _ = trained
    m = ncf_rs.Model.load(runs / "model.pth", data=data)
    ds = ncf_rs.Dataset(data)
    raw = [int(ds.user_ids[i]) for i in (0, 1, 2)]
    frame = m.recommend(raw, k=4)
    assert frame["user"].tolist() == [u for u in raw for _ in range(4)]
    items = set(ds.item_ids.tolist())
    assert set(frame["item"]) <= items
    with pytest.raises(KeyError, match="999999"):
        m.recommend([raw[0], 999999])


def test_recommend_for_history(trained):
    data, runs, _, _ = trained
    m = ncf_rs.Model.load(runs / "model.pth", data=data)
    ds = ncf_rs.Dataset(data)
    history = [int(ds.item_ids[i]) for i in range(20)]
    a = m.recommend_for_history(history, k=10, seed=4)
    b = m.recommend_for_history(history, k=10, seed=4)
    assert a.equals(b)  # deterministic for a seed
    assert list(a.columns) == ["rank", "item", "score"] and len(a) == 10
    assert not set(a["item"]) & set(history)  # their items left out
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        c = m.recommend_for_history(history + [987654321], k=10, seed=4)
    assert any("987654321" in str(w.message) for w in caught)
    assert c.equals(a)  # the unknown item skipped, nothing else changed
    known = m.recommend_for_history(history[:3], user=int(ds.user_ids[0]), k=5)
    assert len(known) == 5
    # One item, as an int or a str, is one item (not the characters of a string).
    one = m.recommend_for_history(history[0], k=5, seed=1)
    assert one.equals(m.recommend_for_history(str(history[0]), k=5, seed=1))
    assert one.equals(m.recommend_for_history([history[0]], k=5, seed=1))


def test_model_without_data(reference_dir):
    m = ncf_rs.Model.load(reference_dir / "reference_model.pth")
    assert m.score(torch.tensor([0, 1]), torch.tensor([5, 6])).shape == (2,)
    with pytest.raises(ncf_rs.NcfValueError, match="data="):
        m.recommend([0])


def test_bad_input_raises_with_the_reason(reference):
    m, _, _ = reference
    u = torch.tensor([0, 1, 2])
    with pytest.raises(TypeError, match="int64"):
        m.score(u.int(), u)
    with pytest.raises(TypeError, match="shape"):
        m.score(u.view(3, 1), u)
    with pytest.raises(ncf_rs.NcfError, match="device"):
        m.score(torch.zeros(3, dtype=torch.long, device="meta"), u)
    with pytest.raises(ValueError, match="3 users but 2 items"):
        m.score(u, u[:2])
    with pytest.raises(ValueError, match="item id 9724 is outside"):
        m.score(u, torch.tensor([0, 1, 9724]))
    with pytest.raises(ValueError, match="user id -1"):
        m.score(torch.tensor([-1]), torch.tensor([0]))
    with pytest.raises(TypeError):
        m.score(object(), u)
    with pytest.raises(TypeError, match="int64"):
        m.score(np.array([0, 1, 2], dtype=np.uint64), u)  # a dtype libtorch's C API does not name
    with pytest.raises(TypeError, match="sparse"):
        m.score(u.to_sparse(), u)
    assert m.users == 610  # usable after every refusal
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        ncf_rs.Model.load("nope.pth")
    with pytest.raises(ValueError, match="device"):
        ncf_rs.Model.load("nope.pth", device="gpu7")


def test_checkpoint_for_another_dataset_is_refused(reference_dir, tmp_path):
    raw = tmp_path / "small.csv"
    rows = "".join(f"{u},{i},5,{u * 100 + i}\n" for u in range(1, 31) for i in range(1, 40) if (u + i) % 3)
    raw.write_text("userId,movieId,rating,timestamp\n" + rows)
    ncf_rs.prepare(raw, tmp_path / "small", negatives=5)
    with pytest.raises(ncf_rs.NcfValueError, match="the checkpoint has 610 users, the dataset 30"):
        ncf_rs.Model.load(reference_dir / "reference_model.pth", data=tmp_path / "small")


@pytest.mark.parametrize("order", ["torch first", "ncf_rs first", "extension before torch"])
def test_imports_in_either_order(order, reference_dir):
    # A fresh interpreter each. `import ncf_rs` imports torch itself first; the extension loaded
    # on its own, before torch is imported at all, finds libtorch through its rpath, and torch
    # imported after shares that libtorch: a tensor made by one is read by the other.
    ext = next(pathlib.Path(ncf_rs.__file__).parent.glob("_ncf_rs*.so"))
    first = {
        "torch first": "import torch\nimport ncf_rs",
        "ncf_rs first": "import ncf_rs\nimport torch",
        "extension before torch": (
            "import importlib.util, sys\n"
            f"spec = importlib.util.spec_from_file_location('ncf_rs._ncf_rs', {str(ext)!r})\n"
            "ncf_rs = importlib.util.module_from_spec(spec)\n"
            "spec.loader.exec_module(ncf_rs)\n"
            "assert 'torch' not in sys.modules\n"
            "import torch"
        ),
    }[order]
    code = first + f"""
m = ncf_rs.Model.load({str(reference_dir / 'reference_model.pth')!r})
t = torch.tensor([0, 1, 2])
s = m.score(t, t)
assert isinstance(s, torch.Tensor) and s.shape == (3,), s
print("ok", float(s[0]))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ok ")


def test_another_torch_version_is_refused_at_import():
    # The extension is built for torch 2.11.0's libtorch: any other torch is named, not crashed on.
    code = "import torch\ntorch.__version__ = '2.10.0+cpu'\nimport ncf_rs\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode != 0
    assert "ImportError: ncf_rs needs torch 2.11.0" in out.stderr and "2.10.0+cpu" in out.stderr
