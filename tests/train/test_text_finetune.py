"""Training text-aware models, pretrain -> fine-tune (same and other catalogue), cold start."""

import dataclasses
import json

import numpy as np
import polars as pl
import pytest
import torch
from tests.conftest import titled_cyclic_dataset

import liverec
from liverec.config import DataConfig
from liverec.data.prepare import prepare
from liverec.train.loop import train
from liverec.train.setup import pretrained_state


@pytest.fixture
def text_cfg(tiny_run_config):
    model = dataclasses.replace(tiny_run_config.model, item_repr="text", text_encoder="hash:16",
                                d_model=16, d_ff=32)
    train_cfg = dataclasses.replace(tiny_run_config.train, epochs=4)
    return dataclasses.replace(tiny_run_config, model=model, train=train_cfg)


@pytest.fixture
def pretrained(text_cfg, text_cache, tmp_path):
    data = prepare(titled_cyclic_dataset(), DataConfig(source="titled"))
    out = tmp_path / "pre"
    return out, train(text_cfg, data, out), data


def test_text_run_dir_and_reload(pretrained):
    out, result, data = pretrained
    vectors = np.load(out / "item_text.npy")
    assert vectors.shape == (data.vocab.n_items, 16)
    assert json.loads((out / "config.json").read_text())["model"]["text_dim"] == 16
    log = json.loads((out / "train_log.json").read_text())
    assert log["n_trainable"] == log["n_parameters"] > 0
    rec = liverec.load(out)
    assert rec.model.items.text.vectors.abs().sum() > 0  # restored from safetensors
    assert result.best_valid["hr@10"] > 0.2


def test_finetune_same_catalogue_starts_from_pretrained(pretrained, text_cfg, tmp_path):
    out, _, data = pretrained
    cfg = dataclasses.replace(text_cfg, train=dataclasses.replace(text_cfg.train, epochs=1, lr=0.0))
    res = train(cfg, data, tmp_path / "ft", init_state=pretrained_state(out))
    assert res.finetune["init_skipped"] == []
    a = pretrained_state(out)
    b = pretrained_state(tmp_path / "ft")
    assert all(torch.allclose(a[k], b[k]) for k in a)  # lr 0: nothing moved


@pytest.mark.parametrize("mode", ["lora", "adaptor"])
def test_transfer_to_another_catalogue(pretrained, text_cfg, tmp_path, mode):
    out, _, _ = pretrained
    target = prepare(titled_cyclic_dataset(n_users=80, n_items=30, seed=1), DataConfig())
    model = dataclasses.replace(text_cfg.model, finetune=mode, lora_rank=2)
    cfg = dataclasses.replace(text_cfg, model=model)
    res = train(cfg, target, tmp_path / mode, init_state=pretrained_state(out))
    assert 0 < res.n_trainable < res.n_parameters
    rec = liverec.load(tmp_path / mode)
    assert rec.model.item_table().shape[0] == 31
    assert rec.model.cfg.finetune == mode


def test_cold_item_added_through_the_api_is_recommended(pretrained):
    out, _, data = pretrained
    rec = liverec.load(out)
    # an item with the same text as item "7" is, for a text-only model, indistinguishable
    clone = data.items.filter(pl.col("item") == "7").with_columns(pl.lit("NEW-7").alias("item"))
    idx = rec.add_items(clone.select("item", "title", "attributes"))
    assert idx.tolist() == [data.vocab.n_items + 1]
    history = ["3", "4", "5", "6"]
    scores = rec.score_indices([rec.encode(history)])[0]
    assert torch.isclose(scores[idx[0]], scores[rec.encode(["7"])[0]], atol=1e-5)
    ranked = [i for i, _ in rec.recommend(history, k=rec.vocab.n_items)]
    assert "NEW-7" in ranked and abs(ranked.index("NEW-7") - ranked.index("7")) == 1
    with pytest.raises(ValueError, match="already"):
        rec.add_items(pl.DataFrame({"item": ["NEW-7"], "title": ["x"]}))


def test_add_items_needs_a_text_model(trained_run):
    rec = liverec.load(trained_run[0])
    with pytest.raises(liverec.model.recommender.LiverecError, match="text-aware"):
        rec.add_items(pl.DataFrame({"item": ["new"], "title": ["x"]}))


def test_cli_init_from_pretrained_run(text_cache, tmp_path):
    from liverec.cli import main

    base = ["train", "--data", "synthetic", "--no-eval", "--set", "data.synthetic.n_users=120",
            "--set", "data.synthetic.n_items=60", "--set", "train.epochs=1",
            "--set", "train.progress=false"]
    model = ["--set", "model.item_repr=text", "--set", "model.text_encoder=hash:16",
             "--set", "model.d_model=16", "--set", "model.d_ff=32", "--set", "model.n_layers=1"]
    assert main([*base, *model, "--out", str(tmp_path / "pre")]) == 0
    other = ["--set", "data.synthetic.seed=3", "--set", "data.synthetic.n_items=40"]
    assert main([*base, *other, "--out", str(tmp_path / "ft"), "--init", str(tmp_path / "pre"),
                 "--set", "model.finetune=lora", "--set", "model.lora_rank=2"]) == 0
    log = json.loads((tmp_path / "ft" / "train_log.json").read_text())
    assert 0 < log["n_trainable"] < log["n_parameters"]
    cfg = json.loads((tmp_path / "ft" / "config.json").read_text())["model"]
    assert cfg["item_repr"] == "text" and cfg["finetune"] == "lora" and cfg["n_items"] == 40
