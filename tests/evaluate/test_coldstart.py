import dataclasses

import numpy as np
import pytest
from tests.conftest import titled_cyclic_dataset

import liverec
from liverec.config import DataConfig
from liverec.data.prepare import prepare
from liverec.evaluate.coldstart import evaluate_coldstart, hold_out_items
from liverec.train.loop import train


@pytest.fixture(scope="module")
def split():
    data = prepare(titled_cyclic_dataset(n_users=200, n_items=40), DataConfig())
    return data, hold_out_items(data, fraction=0.2, seed=3)


def test_split_invariants(split):
    data, cs = split
    assert cs.n_warm == 32 and cs.full.vocab.n_items == 40 and cs.train.vocab.n_items == 32
    assert all((s <= cs.n_warm).all() for s in cs.train.train_sequences())
    _, hist, tgt = cs.train.eval_cases("valid")
    assert (tgt <= cs.n_warm).all() and all((h <= cs.n_warm).all() for h in hist)
    assert len(cs.train.eval_cases("test")[2]) == 0
    # the full view keeps every test case, with the same target ids as the original data
    _, _, t_orig = data.eval_cases("test")
    _, _, t_full = cs.full.eval_cases("test")
    assert np.array_equal(data.vocab.ids[t_orig], cs.full.vocab.ids[t_full])
    assert (t_full > cs.n_warm).any()
    assert cs.cold_items["item"].to_list() == list(cs.full.vocab.ids[cs.n_warm + 1 :])


def test_text_model_scores_cold_items(split, tiny_run_config, text_cache, tmp_path):
    _, cs = split
    model = dataclasses.replace(tiny_run_config.model, item_repr="text", text_encoder="hash:16",
                                d_model=16, d_ff=32)
    cfg = dataclasses.replace(tiny_run_config, model=model,
                              train=dataclasses.replace(tiny_run_config.train, epochs=3))
    train(cfg, cs.train, tmp_path / "cs")
    rec = liverec.load(tmp_path / "cs")
    with pytest.raises(ValueError, match="add them first"):
        evaluate_coldstart(rec.model, cs)
    rec.add_items(cs.cold_items)
    assert rec.vocab.ids.tolist() == cs.full.vocab.ids.tolist()
    out = evaluate_coldstart(rec.model, cs, ks=(5, 10))
    assert out["cold"]["cases"] + out["warm"]["cases"] == out["all"]["cases"]
    assert 0.0 <= out["cold"]["hr@10"] <= 1.0 and "cold_warm_hr@10_ratio" in out


def test_subsample_train_users_keeps_eval_cases(split):
    from liverec.data.subsets import subsample_train_users

    data, _ = split
    small = subsample_train_users(data, 0.25, seed=1)
    assert len(small.train_sequences()) == 50
    for stage in ("valid", "test"):
        assert np.array_equal(small.eval_cases(stage)[2], data.eval_cases(stage)[2])
