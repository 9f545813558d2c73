"""``liverec recommend``: a run with a history and/or a query, a catalogue searched by text."""

from __future__ import annotations

import json

import polars as pl
import pytest

from liverec.cli import main


@pytest.fixture
def titled_run(trained_run, tmp_path):
    """A copy of the tiny run whose catalogue has titles and the hash text encoder."""
    import shutil

    out = tmp_path / "run"
    shutil.copytree(trained_run[0], out)
    items = pl.read_parquet(out / "items.parquet")
    items = items.with_columns(pl.Series("title", [f"title{i} group{int(i) % 3}"
                                                   for i in items["item"].to_list()]))
    items.write_parquet(out / "items.parquet")
    cfg = json.loads((out / "config.json").read_text())
    cfg["model"]["text_encoder"] = "hash:128"
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def test_recommend_by_history_query_and_both(titled_run, text_cache, capsys):
    assert main(["recommend", str(titled_run), "--history", "3", "4", "-k", "2", "--json"]) == 0
    plain = json.loads(capsys.readouterr().out)
    assert plain[0]["item_id"] == "5" and plain[0]["title"] == "title5 group2"
    assert main(["recommend", str(titled_run), "--query", "title17 group2", "-k", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["item_id"] == "17"
    assert main(["recommend", str(titled_run), "--history", "3", "4", "--query", "group2",
                 "--query-weight", "0.3", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].split()[1] == "5"  # the model's next item is group2


@pytest.mark.parametrize("argv, message", [
    (["--query", "  "], "letter or digit"),
    (["--query", "tea", "--query-weight", "2"], "query weight"),
    ([], "--history, --query or both"),
    (["--history", "nope"], "unknown item"),
])
def test_recommend_errors_are_one_line(titled_run, text_cache, capsys, argv, message):
    assert main(["recommend", str(titled_run), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_items_search_needs_a_query_and_no_run(text_cache, capsys, tmp_path):
    path = tmp_path / "items.csv"
    pl.DataFrame({"item": ["a", "b"], "title": ["green tea", "lemon soap"]}).write_csv(path)
    assert main(["recommend", "--items", str(path), "--query", "lemon soap", "-k", "1",
                 "--encoder", "hash:64", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["item_id"] == "b"
    assert main(["recommend", "--items", str(path), "--encoder", "hash:64"]) == 2
    assert main(["recommend", "x", "--items", str(path), "--query", "tea"]) == 2
    assert main(["recommend"]) == 2
    assert "not both and not neither" in capsys.readouterr().err
