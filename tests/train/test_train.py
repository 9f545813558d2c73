import json

import numpy as np
import pytest
import torch

import liverec
from liverec.config import TrainConfig
from liverec.errors import ConfigError
from liverec.evaluate.protocol import evaluate_model
from liverec.model.artifact import load_model
from liverec.train.batches import TrainBatches


def test_learns_the_known_answer(trained_run, known_answer_data):
    out, result = trained_run
    assert result.best_valid["hr@1" if "hr@1" in result.best_valid else "hr@5"] > 0.9
    model, *_ = load_model(out)
    test = evaluate_model(model, known_answer_data, "test", ks=(1, 5))
    assert test["hr@1"] > 0.9, test


def test_run_directory_contents(trained_run):
    out, result = trained_run
    for name in ("config.json", "model.safetensors", "items.parquet", "resolved_config.json",
                 "train_log.json", "training_curve.png"):
        assert (out / name).is_file(), name
    log = json.loads((out / "train_log.json").read_text())
    assert log["best_epoch"] == result.best_epoch and len(log["epochs"]) >= 1
    assert not list(out.glob("*.pt")) and not list(out.glob("*.pkl"))


def test_save_load_gives_same_scores(trained_run, known_answer_data):
    out, _ = trained_run
    a, *_ = load_model(out)
    b, *_ = load_model(out)
    seqs = torch.tensor([[0, 1, 2, 3], [5, 6, 7, 8]])
    with torch.no_grad():
        assert torch.equal(a.score(seqs), b.score(seqs))


def test_recommend_next_item_and_batch_equals_single(trained_run):
    out, _ = trained_run
    m = liverec.load(out)
    top = m.recommend(["10", "11", "12"], k=3)
    assert top[0][0] == "13" and all(isinstance(i, str) for i, _ in top)
    histories = [["1", "2"], ["40", "41", "42", "43"], ["49", "0"]]
    batch = m.recommend_batch(histories, k=5)
    for h, b in zip(histories, batch):
        single = m.recommend(h, k=5)
        assert [i for i, _ in single] == [i for i, _ in b]
        assert np.allclose([s for _, s in single], [s for _, s in b], atol=1e-5)
    seen = m.recommend(["10", "11"], k=50, exclude_seen=True)
    assert {"10", "11"}.isdisjoint(i for i, _ in seen) and len(seen) == 48
    assert len(m.recommend(["10", "11"], k=50, exclude_seen=False)) == 50


def test_unknown_item_is_named(trained_run):
    import pytest

    from liverec.model.recommender import UnknownItemError

    m = liverec.load(trained_run[0])
    with pytest.raises(UnknownItemError, match="'nope'"):
        m.recommend(["1", "nope"])


def test_batches_cover_every_target_once(known_answer_data):
    seqs = known_answer_data.train_sequences()
    tb = TrainBatches(seqs, max_len=16, batch_size=32, seed=1)
    n = sum(int((b["target"] != 0).sum()) for b in tb)
    assert n == sum(min(len(s), 17) - 1 for s in seqs) == tb.n_targets
    for b in tb:  # input is target shifted by one
        assert torch.equal(b["input"][:, 1:][b["target"][:, :-1] != 0],
                           b["target"][:, :-1][b["target"][:, :-1] != 0])


def test_all_windows_make_every_training_event_a_target_once():
    """train.windows="all": each event after a history's first is a target exactly once, in
    order, with the events before it (up to max_len) as its input; "last" keeps SASRec's last
    max_len + 1 events."""
    from collections import Counter

    from liverec.train.batches import training_windows

    rng = np.random.default_rng(0)
    seqs = [np.arange(1, n + 1) + 1000 * u for u, n in enumerate([1, 2, 5, 17, 18, 33, 70])]
    seqs.append(rng.integers(1, 50, size=40))  # repeated items too
    for max_len in (4, 16):
        windows = training_windows(seqs, max_len, "all")
        assert all(2 <= len(w) <= max_len + 1 for w in windows)
        assert Counter(int(t) for w in windows for t in w[1:]) == Counter(
            int(t) for s in seqs for t in s[1:])
        tb = TrainBatches(seqs, max_len=max_len, batch_size=3, seed=0, windows="all")
        assert tb.n_targets == sum(len(s) - 1 for s in seqs)
        for b in tb:  # each target's input is the event before it
            keep = b["target"][:, :-1] != 0
            assert torch.equal(b["input"][:, 1:][keep], b["target"][:, :-1][keep])
        last = training_windows(seqs, max_len, "last")
        assert [list(w) for w in last] == [list(s[-(max_len + 1):]) for s in seqs if len(s) >= 2]
    with pytest.raises(ValueError, match="windows"):
        training_windows(seqs, 4, "some")
    with pytest.raises(ConfigError, match="windows"):
        TrainConfig(windows="some")


def test_prefix_windows_train_every_event_once_at_the_last_position():
    """train.windows="prefixes": one row per event after a history's first, its input the up
    to max_len events before it, supervised at the last position only; for a causal model
    with positions="start" its loss equals all-positions training on the same events."""
    from liverec.train.batches import training_windows

    seqs = [np.arange(1, n + 1) + 1000 * u for u, n in enumerate([1, 2, 5, 9])]
    for max_len in (3, 16):
        windows = training_windows(seqs, max_len, "prefixes")
        assert len(windows) == sum(len(s) - 1 for s in seqs)
        tb = TrainBatches(seqs, max_len=max_len, batch_size=4, seed=0, windows="prefixes")
        assert tb.n_targets == len(windows) == int((tb.targets != 0).sum())
        got = []
        for b in tb:
            assert (b["target"][:, :-1] == 0).all()
            for inp, tgt in zip(b["input"].tolist(), b["target"][:, -1].tolist()):
                got.append(([i for i in inp if i], tgt))
        want = [(list(s[max(0, t - max_len):t]), int(s[t])) for s in seqs
                for t in range(1, len(s))]
        assert sorted(got) == sorted(want)


def test_prefix_windows_loss_equals_all_positions_for_a_causal_model(tiny_model_config):
    import dataclasses

    from liverec.model import build_model

    torch.manual_seed(0)
    cfg = dataclasses.replace(tiny_model_config, positions="start", dropout=0.0,
                              attn_dropout=0.0, emb_dropout=0.0)
    model = build_model(cfg).eval()
    seqs = [np.array([3, 5, 7, 2, 9])]
    full = next(iter(TrainBatches(seqs, max_len=8, batch_size=8, windows="last")))
    pre = next(iter(TrainBatches(seqs, max_len=8, batch_size=8, windows="prefixes")))
    with torch.no_grad():
        assert torch.allclose(model(full), model(pre), atol=1e-5)


def test_a_run_with_prefix_windows_and_the_fourier_mixer_learns(tiny_run_config,
                                                               known_answer_data, tmp_path):
    """BSARec's recipe end to end: model.mixer="fourier" trained on prefixes learns the known
    answer, and the saved run's served lists equal evaluation's."""
    import dataclasses

    from liverec.train.batches import training_windows
    from liverec.train.loop import train

    cfg = dataclasses.replace(
        tiny_run_config, model=dataclasses.replace(tiny_run_config.model, max_len=4, d_model=16,
                                                   d_ff=32, mixer="fourier", filter_bins=2),
        train=dataclasses.replace(tiny_run_config.train, windows="prefixes"))
    seqs = known_answer_data.train_sequences()
    train(cfg, known_answer_data, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["batch_choice"]["sequences"] == len(training_windows(seqs, 4, "prefixes"))
    metrics = evaluate_model(load_model(tmp_path / "run")[0], known_answer_data, "test", ks=(1,))
    assert metrics["hr@1"] > 0.9


def test_a_run_with_all_windows_learns_and_records_its_sequences(tiny_run_config,
                                                                   known_answer_data, tmp_path):
    """train.windows="all" end to end: the batch rule counts the windows, the run records
    the setting and the count, and the model still learns the known answer (max_len 4 is
    shorter than the histories)."""
    import dataclasses

    from liverec.train.batches import training_windows
    from liverec.train.loop import train

    cfg = dataclasses.replace(
        tiny_run_config, model=dataclasses.replace(tiny_run_config.model, max_len=4, d_model=16,
                                                   d_ff=32),
        train=dataclasses.replace(tiny_run_config.train, windows="all"))
    seqs = known_answer_data.train_sequences()
    assert len(training_windows(seqs, 4, "all")) > len(training_windows(seqs, 4, "last"))
    train(cfg, known_answer_data, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    resolved = json.loads((tmp_path / "run" / "resolved_config.json").read_text())
    assert resolved["train"]["windows"] == "all"
    assert saved["batch_choice"]["sequences"] == len(training_windows(seqs, 4, "all"))
    metrics = evaluate_model(load_model(tmp_path / "run")[0], known_answer_data, "test", ks=(1,))
    assert metrics["hr@1"] > 0.9


def test_batch_size_follows_the_data_when_asked():
    """train.min_steps_per_epoch halves the batch (not below 16) until an epoch has that many
    steps; 0 keeps the configured size."""
    from liverec.config import RunConfig, TrainConfig
    from liverec.train.batches import resolve_batch_and_patience

    def size(n, m, b=128):
        return resolve_batch_and_patience(RunConfig(train=TrainConfig(batch_size=b,
                                                              min_steps_per_epoch=m)), n)

    assert size(22_363, 32)[0].train.batch_size == 128  # Beauty: 175 steps already
    cfg, info = size(1_090, 32)  # LastFM: 9 steps at 128 -> 35 at 32
    assert cfg.train.batch_size == 32 and info["steps_per_epoch"] == 35
    assert info["configured"] == 128 and cfg.train.min_steps_per_epoch == 32
    assert size(100, 32)[0].train.batch_size == 16  # never below 16
    assert size(1_090, 0)[0].train.batch_size == 128  # off
    assert size(1_090, 32, b=8)[0].train.batch_size == 8  # never raised


def test_patience_covers_a_number_of_steps_when_asked():
    from liverec.config import RunConfig, TrainConfig
    from liverec.train.batches import resolve_batch_and_patience

    def patience(n, steps, p=8, every=1):
        tc = TrainConfig(min_steps_per_epoch=64, patience=p, min_patience_steps=steps,
                         eval_every=every)
        return resolve_batch_and_patience(RunConfig(train=tc), n)[0].train.patience

    assert patience(22_363, 1_400) == 8  # Beauty: 8 epochs of 175 steps already
    assert patience(1_090, 1_400) == 21  # LastFM: batch 16, 69 steps per epoch
    assert patience(1_090, 1_400, p=2, every=3) == 7  # evaluations, not epochs
    assert patience(1_090, 0) == 8 and patience(1_090, 10, p=30) == 30  # off; never lowered


def test_item_repr_auto_uses_text_when_the_catalogue_has_it():
    import polars as pl
    import pytest

    from liverec.config import ModelConfig
    from liverec.model import build_model
    from liverec.train.setup import resolve_item_repr

    auto = ModelConfig(item_repr="auto", n_items=4)
    titled = pl.DataFrame({"item": ["a", "b", "c", "d"],
                           "title": ["Red lipstick", "", None, "Soap"], "text": ["", "", "", ""],
                           "attributes": [["1"], ["2"], [], []]})
    assert resolve_item_repr(auto, titled).item_repr == "fusion"  # 2 of 4 have a title
    ids_only = titled.with_columns(pl.lit("").alias("title"))  # attribute ids are not text
    assert resolve_item_repr(auto, ids_only).item_repr == "id"
    assert resolve_item_repr(auto, titled.drop("title", "text")).item_repr == "id"
    assert resolve_item_repr(ModelConfig(item_repr="text"), ids_only).item_repr == "text"
    with pytest.raises(ValueError, match="auto"):
        build_model(auto)
