"""ncf_rs.train: the summary, the files it writes, progress, the GIL, Ctrl-C."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

import ncf_rs


def test_train_returns_the_summary_and_writes_the_files(trained):
    data, runs, summary, events = trained
    assert summary["model"] == "neumf" and summary["seed"] == 3
    assert len(summary["epochs"]) == 2
    assert summary["best_epoch"] in (0, 1)
    best = summary["epochs"][summary["best_epoch"]]
    assert summary["best_hr"] == best["hr"] and summary["best_ndcg"] == best["ndcg"]
    # A trained model beats a random ranking of 101 items (HR@10 = 0.1) by far.
    assert summary["best_hr"] > 0.2
    assert summary["train_throughput"] > 0
    assert summary["checkpoint"] == str(runs / "model.pth") and (runs / "model.pth").exists()
    # The dataset has a validation mapping, which then chooses the best epoch.
    assert summary["selected_by"].startswith("validation_hr")
    assert "validation_hr" in best
    # The DLLogger log, as ncf-train writes it.
    lines = [json.loads(l.removeprefix("DLLL ")) for l in (runs / "log.json").read_text().splitlines()]
    assert lines[-1]["data"]["best_accuracy"] == pytest.approx(summary["best_hr"])
    # The progress callable saw every event, in order.
    kinds = [e["event"] for e in events]
    assert kinds[0] == "epoch_started" and kinds.count("epoch_finished") == 2
    assert [e["epoch"] for e in events if e["event"] == "epoch_finished"] == [0, 1]
    batches = [e for e in events if e["event"] == "batches_done"]
    assert batches and batches[-1]["done"] == events[kinds.index("epoch_started")]["batches"]


def test_the_checkpoint_scores_as_test_mode_evaluates(trained):
    # mode="test" evaluates the checkpoint as ncf-train --mode test does: HR@10 of the best epoch.
    data, runs, summary, _ = trained
    again = ncf_rs.train(
        data, "neumf", factors=16, layers=[64, 32, 16], mode="test", load_checkpoint_path=runs / "model.pth",
        checkpoint_dir=None, log_path=None, device="cpu", progress=False,
    )
    assert again["epochs"][0]["hr"] == pytest.approx(summary["best_hr"], abs=1e-12)


def test_same_seed_same_run(prepared, tmp_path):
    data, _ = prepared
    kw = dict(model="mf", epochs=1, batch_size=32768, factors=8, seed=11, log_path=None, device="cpu", progress=False)
    a = ncf_rs.train(data, checkpoint_dir=tmp_path / "a", **kw)
    b = ncf_rs.train(data, checkpoint_dir=tmp_path / "b", **kw)
    assert a["epochs"][0]["hr"] == b["epochs"][0]["hr"]
    assert a["epochs"][0]["train_loss"] == b["epochs"][0]["train_loss"]
    sa = ncf_rs.Model.load(tmp_path / "a" / "model.pth").state_dict()
    sb = ncf_rs.Model.load(tmp_path / "b" / "model.pth").state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_the_gil_is_released_while_training(prepared, tmp_path):
    data, _ = prepared
    ticks = []
    stop = threading.Event()

    def count():
        while not stop.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=count)
    t.start()
    start = time.perf_counter()
    ncf_rs.train(data, model="mf", epochs=2, batch_size=8192, factors=8, seed=1, checkpoint_dir=None,
                 log_path=None, device="cpu", progress=False)
    took = time.perf_counter() - start
    stop.set()
    t.join()
    during = [x for x in ticks if start <= x <= start + took]
    # The other thread ran throughout, not only between the trainer's calls back into Python.
    assert len(during) > 0.2 * took / 0.0011, (len(during), took)


def test_an_exception_in_the_callback_stops_the_run(prepared, tmp_path):
    data, _ = prepared

    def progress(event):
        if event["event"] == "batches_done":
            raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        ncf_rs.train(data, model="mf", epochs=3, batch_size=8192, factors=8, checkpoint_dir=tmp_path,
                     log_path=None, device="cpu", progress=progress)
    assert not (tmp_path / "model.pth").exists()  # no epoch finished


def test_ctrl_c_stops_cleanly(prepared, tmp_path):
    # A real process and a real SIGINT, sent once the first epoch's checkpoint is written (the
    # second epoch, a few seconds of 1,024-sample steps, is then under way). No progress
    # callable: the trainer itself must notice.
    data, _ = prepared
    script = textwrap.dedent(f"""
        import sys, ncf_rs
        try:
            ncf_rs.train({str(data)!r}, model="neumf", epochs=50, batch_size=1024, factors=8, layers=[32, 16],
                         seed=2, checkpoint_dir={str(tmp_path)!r}, log_path=None, device="cpu", progress=False)
        except KeyboardInterrupt:
            print("interrupted", flush=True)
            sys.exit(3)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "model.pth").exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    assert child.poll() is None, "the run ended before it could be interrupted"
    sent = time.monotonic()
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 3, err
    assert "interrupted" in out
    assert time.monotonic() - sent < 10  # stopped within the epoch, not at its end
    # The first epoch's files are whole: the checkpoint loads and resume= continues from it.
    state = ncf_rs.Model.load(tmp_path / "model.pth").state_dict()
    assert state["mf_user_embed.weight"].shape == (610, 8)
    resumed = ncf_rs.train(data, model="neumf", epochs=2, batch_size=1024, factors=8, layers=[32, 16], seed=2,
                           resume=tmp_path, checkpoint_dir=tmp_path, log_path=None, device="cpu", progress=False)
    assert [e["epoch"] for e in resumed["epochs"]] == [1]


def test_bad_arguments(prepared, tmp_path):
    data, _ = prepared
    with pytest.raises(ValueError, match="unknown model `resnet`"):
        ncf_rs.train(data, model="resnet", checkpoint_dir=None, log_path=None)
    with pytest.raises(ValueError, match="mode"):
        ncf_rs.train(data, mode="eval", checkpoint_dir=None, log_path=None)
    with pytest.raises(ValueError, match="pretrained_mlp"):
        ncf_rs.train(data, pretrained_gmf="g.pth", checkpoint_dir=None, log_path=None)
    with pytest.raises(FileNotFoundError):
        ncf_rs.train(tmp_path / "nowhere", checkpoint_dir=None, log_path=None)
    with pytest.raises(TypeError):
        ncf_rs.train(data, epochz=3)
