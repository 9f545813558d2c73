"""Ids are opaque strings from every loader through the vocabulary, the cache, the run
directory and the Python API (cases leading-zero-ids, time-col-typo-silent-file-order,
three-events-per-user-traceback, and a hypothesis round trip of arbitrary id strings)."""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
import string

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import liverec
from liverec.cli import main
from liverec.config import DataConfig, RunConfig, TrainConfig
from liverec.data.loaders import load_pairs, load_s3rec, load_table
from liverec.data.prepare import (
    ItemVocab,
    cache_key,
    load_prepared,
    prepare,
    save_prepared,
    sorted_ids,
)
from liverec.data.registry import load_dataset
from liverec.errors import DataError

TINY = ["--set", "model.d_model=8", "--set", "model.d_ff=16", "--set", "model.max_len=8",
        "--set", "model.n_layers=1", "--set", "train.epochs=1", "--set", "train.progress=false",
        "--set", "data.cache=false", "--no-baselines"]


def write_csv(path, rows, header=("user", "item", "timestamp")):
    """Write an RFC 4180 CSV with Python's csv module: CRLF line ends, and fields holding a
    comma, a quote, CR or LF quoted (a bare CR in an unquoted field is not CSV)."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\r\n")
        writer.writerow(header)
        writer.writerows(rows)
    return path


def sequences(p) -> dict[str, list[str]]:
    """Each user's prepared item sequence, decoded."""
    seqs = p.sequences
    return {seqs.users[u]: p.vocab.decode(seqs.of(u)) for u in range(seqs.n_users)}


# ----------------------------------------------------------------------------- leading zeros

# the case's file: six users, each a rotation of 1 2 3 01 002 4 (time = position)
ORDER = ["1", "2", "3", "01", "002", "4"]
LEADING = [(f"u{u}", ORDER[(u + t) % 6], t + 1) for u in range(6) for t in range(6)]


def test_leading_zero_ids_stay_distinct_items(tmp_path):
    path = write_csv(tmp_path / "leading_zeros.csv", LEADING)
    p = prepare(load_dataset(DataConfig(source=str(path), cache=False)), DataConfig())
    assert sorted(p.vocab.ids[1:].tolist()) == sorted(ORDER)  # six items, none merged
    assert p.vocab.ids[1:].tolist() == ["1", "2", "3", "4", "01", "002"]  # shortlex, unparsed
    assert sequences(p)["u0"] == ORDER  # file order 1 2 3 01 002 4, no row lost or doubled
    assert p.stats["interactions"] == 36


def test_twenty_digit_and_integer_typed_ids(tmp_path):
    big = ["12345678901234567890", "12345678901234567891", "99999999999999999999", "5"]
    rows = [(f"u{u}", big[(u + t) % 4], t) for u in range(3) for t in range(5)]
    p = prepare(load_dataset(DataConfig(source=str(write_csv(tmp_path / "b.csv", rows)))),
                DataConfig())
    assert p.vocab.ids[1:].tolist() == ["5", *sorted(big[:3])]
    assert sequences(p)["u1"] == [big[(1 + t) % 4] for t in range(5)]
    # Parquet integer columns (even beyond int64) become their decimal strings
    parquet = tmp_path / "ints.parquet"
    pl.DataFrame({"user": pl.Series([7, 7], dtype=pl.Int32),
                  "item": pl.Series([18446744073709551615, 1], dtype=pl.UInt64),
                  "timestamp": [2, 1]}).write_parquet(parquet)
    rows = load_table(parquet, DataConfig()).interactions.rows()
    assert rows == [("7", "1", 1), ("7", "18446744073709551615", 2)]


def test_float_id_column_is_an_error(tmp_path):
    parquet = tmp_path / "f.parquet"
    pl.DataFrame({"user": ["a"], "item": [1.0], "timestamp": [1]}).write_parquet(parquet)
    with pytest.raises(DataError, match=r"'item': ids must be text or integers, not Float64"):
        load_table(parquet, DataConfig())


def test_run_directory_and_api_keep_leading_zeros(tmp_path, capsys):
    out = tmp_path / "run"
    path = write_csv(tmp_path / "leading_zeros.csv", LEADING)
    assert main(["train", "--data", str(path), "--out", str(out), *TINY]) == 0
    capsys.readouterr()
    items = pl.read_parquet(out / "items.parquet")
    assert items.schema["item"] == pl.Utf8
    assert items.sort("index")["item"].to_list() == ["1", "2", "3", "4", "01", "002"]
    rec = liverec.load(out)
    got = [item for item, _ in rec.recommend(["01", "002"], k=6)]
    assert sorted(got) == ["1", "2", "3", "4"]  # the four unseen items, exact strings
    with pytest.raises(KeyError, match="'0001'"):
        rec.recommend(["0001"])
    with pytest.raises(KeyError):
        rec.recommend([1])  # an int is not the id "1"


def test_vocab_rejects_what_it_cannot_carry():
    with pytest.raises(DataError, match="non-empty strings"):
        ItemVocab.from_ids(["a", ""])
    with pytest.raises(DataError, match="non-empty strings"):
        ItemVocab.from_ids(["a", 1])
    with pytest.raises(DataError, match="'a' occurs twice"):
        ItemVocab.from_ids(["a", "b", "a"])


@given(st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=30))
@settings(max_examples=25, deadline=None)
def test_shortlex_order_matches_the_reference(values):
    """The vectorised vocabulary order equals the definition: UTF-8 length, then code points."""
    reference = sorted(set(values), key=lambda s: (len(s.encode()), s))
    assert sorted_ids(pl.Series(values, dtype=pl.Utf8)) == reference


# ----------------------------------------------------------------------------- time column

TIMED = [("u1", "a", 300), ("u2", "a", 100), ("u1", "b", 200), ("u2", "b", 300),
         ("u1", "c", 100), ("u2", "c", 200), ("u1", "d", 400), ("u2", "d", 400)]
BY_TIME = {"u1": ["c", "b", "a", "d"], "u2": ["a", "c", "b", "d"]}


@pytest.mark.parametrize("time_col", [None, "time"])
def test_time_column_named_time_is_used(tmp_path, caplog, time_col):
    path = write_csv(tmp_path / "log_time.csv", TIMED, ("user", "item", "time"))
    cfg = DataConfig(source=str(path), time_col=time_col, cache=False)
    with caplog.at_level(logging.INFO, logger="liverec"):
        p = prepare(load_dataset(cfg), cfg)
    assert sequences(p) == BY_TIME and p.stats["order"] == "time"
    if time_col is None:  # auto-detected: said which column, at INFO
        assert "using 'time' as the time column" in caplog.text


def test_named_time_column_that_does_not_exist_is_an_error(tmp_path, capsys):
    path = write_csv(tmp_path / "log_time.csv", TIMED, ("user", "item", "time"))
    with pytest.raises(DataError, match=r"no time column 'tme'.*\['user', 'item', 'time'\]"):
        load_dataset(DataConfig(source=str(path), time_col="tme"))
    assert main(["train", "--data", str(path), "--out", "x", "--set", "data.time_col=tme"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "did you mean 'time'" in err


def test_no_time_column_warns_and_says_file_order(tmp_path, caplog):
    rows = [(u, i) for u, i, _ in TIMED]
    path = write_csv(tmp_path / "no_time.csv", rows, ("user", "item"))
    cfg = DataConfig(source=str(path), cache=False)
    with caplog.at_level(logging.INFO, logger="liverec"):
        p = prepare(load_dataset(cfg), cfg)
    warned = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("ordered by file position" in r.getMessage() for r in warned)
    assert p.stats["order"] == "file"
    assert sequences(p) == {"u1": ["a", "b", "c", "d"], "u2": ["a", "b", "c", "d"]}
    explicit = DataConfig(source=str(path), time_col="", cache=False)  # file order on purpose
    assert load_dataset(explicit).order == "file"


# ----------------------------------------------------------------------------- short users


def test_three_events_per_user_is_one_line_before_training(tmp_path, capsys):
    rows = [(f"u{u}", f"i{(u + t) % 7}", t + 1) for u in range(10) for t in range(3)]
    path = write_csv(tmp_path / "three_each.csv", rows)
    assert main(["train", "--data", str(path), "--out", str(tmp_path / "run"), *TINY]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("liverec: error:") and len(err.splitlines()) == 1
    assert "no training pairs" in err and "10 users with 3 events each" in err
    assert "0 training pairs, 10 validation and 10 test cases" in err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("rows", "split", "missing"),
    [
        ([("a", "1", 1), ("a", "2", 2)], "leave_one_out",  # short users train on all events
         "no validation cases and no test cases: 1 users with 2 events each give 1 training"),
        ([("a", "1", 1), ("b", "2", 2)], "leave_one_out",
         "no training pairs and no validation cases and no test cases"),
        # both time cut-offs fall on t=4: the validation window is empty
        ([(u, str(t), t) for u in "ab" for t in range(5)] + [("c", "9", 100)], "temporal",
         "temporal split leaves no validation cases: .*change data.temporal_test_fraction"),
    ],
)
def test_every_empty_part_of_a_split_is_named(rows, split, missing):
    df = pl.DataFrame(rows, schema={"user": pl.Utf8, "item": pl.Utf8, "ts": pl.Int64},
                      orient="row")
    from liverec.data.tables import Dataset, empty_items

    with pytest.raises(DataError, match=missing):
        prepare(Dataset("t", df, empty_items(df["item"])), DataConfig(split=split))


def test_cache_key_names_the_code_version(tmp_path, monkeypatch):
    import liverec.data.prepare as prep

    before = cache_key(DataConfig(), [])
    monkeypatch.setattr(prep, "PREP_VERSION", prep.PREP_VERSION + 1)
    assert cache_key(DataConfig(), []) != before
    monkeypatch.setattr(prep, "__version__", "999")
    assert len({before, cache_key(DataConfig(), [])}) == 2


# ----------------------------------------------------------------------------- round trip

PUNCT = " ,;\"'/\\|:.-_+#%&*()[]{}<>?!=~`@$^\t"
EXOTIC = "éüßøçñ中文字日本語한국어ÿ€🙂\u200b\u00a0\x00\x7f"


def _is_id(s: str) -> bool:
    """What a CSV cell can carry as an id: not empty or blank (those read as missing)."""
    return s.strip() != "" and pl.Series([s]).str.strip_chars()[0] != ""


ID = st.one_of(
    st.integers(0, 10**25).map(str),  # integers, beyond int64 too
    st.integers(0, 999).map(lambda n: f"{n:05d}"),  # leading zeros
    st.floats(allow_nan=False, allow_infinity=False).map(repr),  # "1.0", "1e-05", "-0.0"
    st.dates().map(str),  # 2020-01-01
    st.text(string.ascii_letters + string.digits + PUNCT + EXOTIC + "\n\r", min_size=1,
            max_size=12),
    st.text(min_size=1, max_size=8),  # any Unicode
).filter(_is_id)


@pytest.fixture(scope="module")
def tiny_cfg():
    from liverec.config import ModelConfig

    return RunConfig(
        data=DataConfig(cache=False),
        model=ModelConfig(d_model=8, d_ff=16, n_layers=1, n_heads=1, max_len=8, dropout=0.0,
                          attn_dropout=0.0, emb_dropout=0.0),
        train=TrainConfig(epochs=1, batch_size=64, warmup_steps=1, progress=False),
    )


@given(items=st.lists(ID, min_size=3, max_size=7, unique=True),
       users=st.lists(ID, min_size=2, max_size=3, unique=True))
@settings(max_examples=int(os.environ.get("LIVEREC_ID_EXAMPLES", "8")), deadline=None,
          derandomize=os.environ.get("LIVEREC_ID_EXAMPLES") is None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow, HealthCheck.filter_too_much])
def test_arbitrary_ids_round_trip(tmp_path_factory, tiny_cfg, items, users):
    """CSV (and Parquet, TSV) -> load -> prepare -> cache -> train (1 epoch) -> save -> load ->
    recommend: every id comes back byte for byte."""
    from liverec.train.loop import train

    tmp = tmp_path_factory.mktemp("ids")
    want = {u: [items[(k + t) % len(items)] for t in range(5)] for k, u in enumerate(users)}
    rows = [(u, i, t) for u, seq in want.items() for t, i in enumerate(seq)]
    path = write_csv(tmp / "log.csv", rows[::-1])  # time, not file order, decides
    cfg = dataclasses.replace(tiny_cfg.data, source=str(path))
    p = prepare(load_dataset(cfg), cfg)
    assert sequences(p) == want
    used = sorted({i for seq in want.values() for i in seq})
    assert sorted(p.vocab.ids[1:].tolist()) == used
    assert p.vocab.decode(p.vocab.encode(used)) == used
    parquet = tmp / "log.parquet"  # the same log as Parquet and as TSV loads the same
    pl.DataFrame(rows[::-1], schema={"user": pl.Utf8, "item": pl.Utf8, "timestamp": pl.Int64},
                 orient="row").write_parquet(parquet)
    tsv = tmp / "log.tsv"
    with open(tsv, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh, delimiter="\t", lineterminator="\r\n").writerows(
            [("user", "item", "timestamp"), *rows[::-1]])
    for other in (parquet, tsv):
        other_cfg = dataclasses.replace(cfg, source=str(other))
        assert sequences(prepare(load_dataset(other_cfg), other_cfg)) == want
    save_prepared(p, tmp / "cache")
    back = load_prepared(tmp / "cache")
    assert back.vocab.ids.tolist() == p.vocab.ids.tolist() and sequences(back) == want

    out = tmp / "run"
    train(dataclasses.replace(tiny_cfg, data=cfg), p, out)
    rec = liverec.load(out)
    assert rec.vocab.ids.tolist() == p.vocab.ids.tolist()
    for seq in want.values():
        got = [i for i, _ in rec.recommend(seq, k=len(used), exclude_seen=False)]
        assert sorted(got) == used  # every id comes back byte for byte
        unseen = [i for i, _ in rec.recommend(seq, k=len(used))]
        assert set(unseen) == set(used) - set(seq)


@given(st.lists(st.text(string.ascii_letters + string.digits + ",\"'/.-_;éü中🙂", min_size=1,
                        max_size=8), min_size=2, max_size=6, unique=True))
@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_whitespace_separated_formats_keep_ids(tmp_path, ids):
    """S3-Rec sequence and BERT4Rec pair files carry any id without whitespace, unchanged."""
    s3 = tmp_path / "s.txt"
    s3.write_text(f"{ids[0]} " + " ".join(ids[1:]) + "\n", encoding="utf-8")
    ds = load_s3rec(s3, integer_ids=False)
    assert ds.interactions["item"].to_list() == ids[1:] and ds.order == "sequence"
    pairs = tmp_path / "p.txt"
    pairs.write_text("".join(f"{ids[0]} {i}\n" for i in ids), encoding="utf-8")
    assert load_pairs(pairs, integer_ids=False).interactions["item"].to_list() == ids
    assert np.array_equal(load_dataset(DataConfig(source=str(pairs))).interactions["item"],
                          ids)


def test_retrain_event_csv_keeps_id_text(tmp_path):
    """``liverec retrain --events file.csv`` reads user_id/item_id as text, not numbers."""
    from liverec.cli import _read_events

    path = write_csv(tmp_path / "events.csv", [("007", "01", 1), ("7", "1", 2)],
                     ("user_id", "item_id", "ts"))
    assert _read_events(str(path)).rows() == [("007", "01", 1.0), ("7", "1", 2.0)]
