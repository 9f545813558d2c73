import numpy as np
import polars as pl
import pytest

from liverec.config import DataConfig
from liverec.data.prepare import (
    ItemVocab,
    k_core,
    load_prepared,
    prepare,
    save_prepared,
)
from liverec.data.tables import Dataset, empty_items
from liverec.errors import DataError


def _ds(rows):
    df = pl.DataFrame(rows, schema={"user": pl.Utf8, "item": pl.Utf8, "ts": pl.Int64},
                      orient="row")
    return Dataset("t", df, empty_items(df["item"]))


def test_vocab_and_leave_one_out():
    ds = _ds([("a", "10", 1), ("a", "2", 2), ("a", "3", 3), ("a", "10", 4),
              ("b", "3", 1), ("b", "2", 2), ("b", "7", 3)])
    p = prepare(ds, DataConfig())
    assert p.vocab.ids.tolist() == ["<pad>", "2", "3", "7", "10"]  # numeric order, 0 = pad
    assert p.vocab.decode(p.sequences.of(0)) == ["10", "2", "3", "10"]
    users, hists, targets = p.eval_cases("test")
    assert [p.vocab.decode(h) for h in hists] == [["10", "2", "3"], ["3", "2"]]
    assert p.vocab.decode(targets) == ["10", "7"]
    _, vh, vt = p.eval_cases("valid")
    assert p.vocab.decode(vt) == ["3", "2"] and [len(h) for h in vh] == [2, 1]
    train = p.train_sequences()
    assert [p.vocab.decode(s) for s in train] == [["10", "2"]]  # b has 1 training event
    assert p.items["index"].to_list() == [1, 2, 3, 4]


def test_time_order_is_used():
    ds = _ds([("a", "1", 30), ("a", "2", 10), ("a", "3", 20), ("a", "4", 40)])
    p = prepare(ds, DataConfig())
    assert p.vocab.decode(p.sequences.of(0)) == ["2", "3", "1", "4"]


def test_short_users_get_no_cases_and_empty_is_error():
    ds = _ds([("a", "1", 1), ("a", "2", 2), ("a", "3", 3), ("a", "4", 4), ("b", "1", 1)])
    p = prepare(ds, DataConfig())
    assert p.stats["test_cases"] == 1 and p.stats["train_pairs"] == 1
    with pytest.raises(DataError, match="no training pairs and no validation cases and no test"):
        prepare(_ds([("a", "1", 1), ("b", "1", 1)]), DataConfig())


def test_k_core_iterates():
    df = pl.DataFrame({"user": ["a", "a", "b", "b", "c"], "item": ["1", "2", "1", "2", "3"],
                       "ts": [1, 2, 1, 2, 1]})
    out = k_core(df, 2, 2)
    assert sorted(out["item"].unique().to_list()) == ["1", "2"]
    assert "c" not in out["user"].to_list()


def test_temporal_split():
    rows = [(u, str(i), t) for u in "abcd" for i, t in enumerate(range(0, 100, 10))]
    p = prepare(_ds(rows), DataConfig(split="temporal", temporal_test_fraction=0.1))
    assert p.split.kind == "temporal"
    assert (p.split.test_pos > p.split.valid_pos).all()
    assert (p.split.train_end <= p.split.valid_pos).all()


def test_map_onto_existing_vocab_drops_unknown(caplog):
    ds = _ds([("a", "1", 1), ("a", "2", 2), ("a", "3", 3), ("a", "9", 4)])
    vocab = ItemVocab.from_ids(["1", "2", "3"])
    p = prepare(ds, DataConfig(), vocab=vocab)
    assert p.vocab is vocab and len(p.sequences.items) == 3
    assert "dropped 1 interactions" in caplog.text


def test_cache_round_trip(tmp_path, known_answer_data):
    save_prepared(known_answer_data, tmp_path / "p")
    back = load_prepared(tmp_path / "p")
    assert np.array_equal(back.sequences.items, known_answer_data.sequences.items)
    assert np.array_equal(back.split.test_pos, known_answer_data.split.test_pos)
    assert back.vocab.ids.tolist() == known_answer_data.vocab.ids.tolist()
    assert back.stats == known_answer_data.stats
