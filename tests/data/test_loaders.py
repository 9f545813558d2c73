"""File-format loaders: parsing, joins, order, and a DataError naming file + line for bad input."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import polars as pl
import pytest

from liverec.config import DataConfig
from liverec.data.loaders import load_pairs, load_s3rec, load_table
from liverec.data.movielens import (
    MD5,
    cache_root,
    download_movielens,
    load_ml1m,
    load_ml100k,
    load_ml_latest_small,
    load_movielens,
    verify_md5,
)
from liverec.data.tables import INTERACTION_SCHEMA, ITEM_SCHEMA
from liverec.errors import DataError


def write(path: Path, text: str, encoding: str = "utf-8") -> Path:
    path.write_bytes(text.encode(encoding))
    return path


def seqs(df: pl.DataFrame) -> dict[str, list[str]]:
    return {u: g["item"].to_list() for (u,), g in df.group_by("user", maintain_order=True)}


def check_schema(ds) -> None:
    for col, dtype in INTERACTION_SCHEMA.items():
        assert ds.interactions.schema[col] == dtype
    for col, dtype in ITEM_SCHEMA.items():
        assert ds.items.schema[col] == dtype


# ----------------------------------------------------------------------------- S3-Rec


def test_s3rec_parses_users_items_and_order(tmp_path):
    path = write(tmp_path / "Toy.txt", "1 3 1 2\n2 2\n10 5 3 5\n")
    ds = load_s3rec(path)
    check_schema(ds)
    assert ds.name == "Toy"
    assert seqs(ds.interactions) == {"1": ["3", "1", "2"], "10": ["5", "3", "5"], "2": ["2"]}
    assert ds.interactions.filter(pl.col("user") == "10")["ts"].to_list() == [0, 1, 2]
    assert ds.items["item"].to_list() == ["1", "2", "3", "5"]
    assert set(ds.items["title"]) == {""} and set(ds.items["text"]) == {""}


def test_s3rec_joins_attributes_and_titles(tmp_path):
    path = write(tmp_path / "Toy.txt", "1 1 2\n2 2 3\n")
    attrs = write(tmp_path / "a.json", json.dumps({"1": [7, 8], "2": [9], "99": [1]}))
    titles = write(tmp_path / "t.tsv", "item_id\tasin\ttitle\n1\tB01\tRed Lipstick\n3\tB03\tA\tB\n")
    ds = load_s3rec(path, attrs, titles, name="toy")
    by_id = {r["item"]: r for r in ds.items.to_dicts()}
    assert set(by_id) == {"1", "2", "3"}  # exactly the interaction items
    assert by_id["1"]["attributes"] == ["7", "8"] and by_id["1"]["title"] == "Red Lipstick"
    assert by_id["2"]["attributes"] == ["9"] and by_id["2"]["title"] == ""
    assert by_id["3"]["attributes"] == [] and by_id["3"]["title"] == "A\tB"


def test_s3rec_skips_blank_lines_and_keeps_line_numbers(tmp_path):
    path = write(tmp_path / "x.txt", "1 1 2\n\n2 x\n")
    with pytest.raises(DataError, match=r"x\.txt, line 3: token 'x' is not an integer"):
        load_s3rec(path)


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("1 1 2\n2\n", r"bad\.txt, line 2: user '2' has no items"),
        ("1 1 2.5\n", r"bad\.txt, line 1: token '2\.5' is not an integer"),
        ("", r"bad\.txt: file is empty"),
        ("\n  \n", r"bad\.txt: file is empty"),
    ],
)
def test_s3rec_bad_input(tmp_path, text, pattern):
    with pytest.raises(DataError, match=pattern):
        load_s3rec(write(tmp_path / "bad.txt", text))


def test_s3rec_string_ids_when_allowed(tmp_path):
    ds = load_s3rec(write(tmp_path / "s.txt", "ua B01 B02\n"), integer_ids=False)
    assert seqs(ds.interactions) == {"ua": ["B01", "B02"]}


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"file not found: .*nope\.txt"):
        load_s3rec(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("a.json", '{"1": [1,\n 2', r"a\.json, line 2 column \d+: invalid JSON"),
        ("a.json", "[1, 2]", r"a\.json: expected a JSON object"),
        ("a.json", '{"1": 5}', r"a\.json: item '1' has attributes 5, expected a list"),
        ("t.tsv", "item_id\tname\n1\tx\n", r"t\.tsv, line 1: header lacks column\(s\) \['title'\]"),
        ("t.tsv", "item_id\tasin\ttitle\n1\tB01\n", r"t\.tsv, line 2: expected 3 '\\t'-separated"),
    ],
)
def test_side_file_errors(tmp_path, name, text, pattern):
    seq = write(tmp_path / "s.txt", "1 1 2\n")
    side = write(tmp_path / name, text)
    kwargs = {"attributes_path": side} if name.endswith(".json") else {"titles_path": side}
    with pytest.raises(DataError, match=pattern):
        load_s3rec(seq, **kwargs)


# ----------------------------------------------------------------------------- pairs


def test_pairs_parse_and_position_ts(tmp_path):
    ds = load_pairs(write(tmp_path / "p.txt", "1 5\n1 3\n2 3\n2 4\n2 5\n"))
    check_schema(ds)
    assert seqs(ds.interactions) == {"1": ["5", "3"], "2": ["3", "4", "5"]}
    assert ds.interactions["ts"].to_list() == [0, 1, 0, 1, 2]
    assert ds.items["item"].to_list() == ["3", "4", "5"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("1 5\n1 3 4\n", r"p\.txt, line 2: expected 2 fields \(user item\), found 3"),
        ("1 5\n7\n", r"p\.txt, line 2: expected 2 fields \(user item\), found 1"),
        ("1 5\n1 a\n", r"p\.txt, line 2: token 'a' is not an integer"),
    ],
)
def test_pairs_bad_input(tmp_path, text, pattern):
    with pytest.raises(DataError, match=pattern):
        load_pairs(write(tmp_path / "p.txt", text))


# ----------------------------------------------------------------------------- tables


def test_csv_with_integer_times(tmp_path):
    path = write(tmp_path / "r.csv", "uid,iid,t,ev\nb,x,20,view\na,y,10,buy\na,x,5,view\n")
    cfg = DataConfig(user_col="uid", item_col="iid", time_col="t", event_col="ev")
    ds = load_table(path, cfg)
    check_schema(ds)
    assert ds.interactions.rows() == [
        ("a", "x", 5, "view"),
        ("a", "y", 10, "buy"),
        ("b", "x", 20, "view"),
    ]


def test_tsv_iso_and_float_times(tmp_path):
    iso = write(tmp_path / "r.tsv", "user\titem\ttimestamp\nu\ti\t2020-01-01T00:00:00Z\n")
    assert load_table(iso, DataConfig()).interactions["ts"].to_list() == [1577836800]
    flt = write(tmp_path / "f.csv", "user,item,timestamp\nu,i,12.7\nu,j,3.2\n")
    assert load_table(flt, DataConfig()).interactions["ts"].to_list() == [3, 12]


def test_parquet_and_file_order_without_time(tmp_path):
    path = tmp_path / "r.parquet"
    pl.DataFrame({"user": [2, 1, 2], "item": [7, 8, 9]}).write_parquet(path)
    ds = load_table(path, DataConfig(time_col=""))  # "" = file order on purpose
    assert ds.interactions.rows() == [("1", "8", 1), ("2", "7", 0), ("2", "9", 2)]
    assert ds.order == "file"
    auto = load_table(path, DataConfig(time_col=None))  # no time-like column: file order
    assert auto.interactions.rows() == ds.interactions.rows() and auto.order == "file"
    with pytest.raises(DataError, match=r"no time column 'when'.*columns present"):
        load_table(path, DataConfig(time_col="when"))  # named but absent: an error


def test_parquet_datetime_column(tmp_path):
    path = tmp_path / "d.parquet"
    from datetime import datetime

    pl.DataFrame(
        {"user": ["u"], "item": ["i"], "timestamp": [datetime(2020, 1, 1)]}
    ).write_parquet(path)
    assert load_table(path, DataConfig()).interactions["ts"].to_list() == [1577836800]


def test_table_drops_null_ids_and_duplicates(tmp_path, caplog):
    path = write(tmp_path / "r.csv", "user,item,timestamp\nu,i,1\nu,i,1\n,i,2\nu,,3\nu,j,4\n")
    with caplog.at_level("INFO"):
        ds = load_table(path, DataConfig())
    assert ds.interactions.rows() == [("u", "i", 1), ("u", "j", 4)]
    assert "dropped 2 row(s) with an empty user or item" in caplog.text
    assert "dropped 1 exact duplicate row(s)" in caplog.text


@pytest.mark.parametrize(
    ("text", "cfg", "pattern"),
    [
        ("a,b\n1,2\n", DataConfig(), r"r\.csv: missing column\(s\) \['user', 'item'\]; columns present: \['a', 'b'\]"),  # noqa: E501
        ("user,item,timestamp\nu,i,1\nu,j,soon\n", DataConfig(), r"r\.csv, column 'timestamp', line 3: cannot parse time value 'soon'"),  # noqa: E501
        ("user,item,timestamp\nu,i,1\nu,j,\n", DataConfig(), r"r\.csv, column 'timestamp', line 3: cannot parse"),  # noqa: E501
        ("user,item\n", DataConfig(), r"r\.csv: no rows"),
        ("", DataConfig(), r"r\.csv: file is empty"),
        ("user,item\nu,i,x,y\n", DataConfig(), r"r\.csv: cannot read as csv"),
        ("user,item\nu,i\n", DataConfig(event_col="ev"), r"missing column\(s\) \['ev'\]"),
    ],
)
def test_table_bad_input(tmp_path, text, cfg, pattern):
    with pytest.raises(DataError, match=pattern):
        load_table(write(tmp_path / "r.csv", text), cfg)


def test_table_unknown_extension(tmp_path):
    with pytest.raises(DataError, match=r"r\.dat: cannot tell the table format"):
        load_table(write(tmp_path / "r.dat", "user,item\n"), DataConfig())


# ----------------------------------------------------------------------------- MovieLens


def make_ml100k(root: Path) -> Path:
    root.mkdir()
    write(root / "u.data", "2\t10\t4\t300\n1\t10\t3\t200\n1\t11\t5\t100\n")
    write(root / "u.genre", "unknown|0\nAction|1\nComédie|2\n\n", "latin-1")
    items = "10|Amélie (2001)|x||url|0|1|1\n11|Heat (1995)|x||url|0|1|0\n"
    write(root / "u.item", items, "latin-1")
    return root


def test_ml100k(tmp_path):
    ds = load_ml100k(make_ml100k(tmp_path / "ml-100k"))
    check_schema(ds)
    assert seqs(ds.interactions) == {"1": ["11", "10"], "2": ["10"]}
    assert ds.interactions["ts"].to_list() == [100, 200, 300]
    rows = {r["item"]: r for r in ds.items.to_dicts()}
    assert rows["10"]["title"] == "Amélie (2001)"
    assert rows["10"]["attributes"] == ["genre:Action", "genre:Comédie"]
    assert rows["11"]["attributes"] == ["genre:Action"]


def test_ml100k_bad_line(tmp_path):
    root = make_ml100k(tmp_path / "ml")
    write(root / "u.data", "1\t10\t4\t300\n1\t10\t3\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: expected 4 '\\t'-separated fields"):
        load_ml100k(root)
    write(root / "u.data", "1\t10\t4\t300\n1\tten\t3\t5\n")
    with pytest.raises(DataError, match=r"u\.data, line 2: column 'item' value 'ten' is not an"):
        load_ml100k(root)


def test_ml_latest_small(tmp_path):
    root = tmp_path / "mls"
    root.mkdir()
    write(root / "ratings.csv", "userId,movieId,rating,timestamp\n1,5,4.0,20\n1,6,3.5,10\n")
    write(root / "movies.csv", 'movieId,title,genres\n5,"Heat, The (1995)",Action|Crime\n'
          "6,Odd (2000),(no genres listed)\n")
    ds = load_ml_latest_small(root)
    assert seqs(ds.interactions) == {"1": ["6", "5"]}
    rows = {r["item"]: r for r in ds.items.to_dicts()}
    assert rows["5"] == {"item": "5", "title": "Heat, The (1995)", "text": "",
                         "attributes": ["genre:Action", "genre:Crime"]}
    assert rows["6"]["attributes"] == []


def test_ml1m_gz_and_latin1_movies(tmp_path):
    root = tmp_path / "ml-1m"
    root.mkdir()
    (root / "ratings.dat.gz").write_bytes(gzip.compress(b"1::7::5::50\n1::8::3::40\n2::7::1::9\n"))
    write(root / "movies.dat", "7::Café (1999)::Drama|Comedy\n8::Up: High (2000)::Drama\n",
          "latin-1")
    ds = load_ml1m(root)
    assert seqs(ds.interactions) == {"1": ["8", "7"], "2": ["7"]}
    rows = {r["item"]: r for r in ds.items.to_dicts()}
    assert rows["7"]["title"] == "Café (1999)"
    assert rows["7"]["attributes"] == ["genre:Drama", "genre:Comedy"]
    assert rows["8"]["title"] == "Up: High (2000)"
    assert load_movielens(root / "ratings.dat.gz").interactions.equals(ds.interactions)


def test_ml1m_bad_line(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::7::5::50\n1::8::3\n")
    with pytest.raises(DataError, match=r"ratings\.dat, line 2: expected 4 '::'-separated"):
        load_movielens(path)


def test_movielens_dir_without_ratings(tmp_path):
    with pytest.raises(DataError, match="no MovieLens ratings file"):
        load_movielens(tmp_path)


def test_verify_md5(tmp_path):
    path = write(tmp_path / "f.zip", "hello")
    verify_md5(path, "5d41402abc4b2a76b9719d911017c592")
    with pytest.raises(DataError, match=r"f\.zip: md5 checksum 5d41.* does not match"):
        verify_md5(path, MD5["ml-100k"])


def test_download_checks_md5_and_extracts(tmp_path, monkeypatch):
    """No network: the fetch is replaced by writing a local zip."""
    import zipfile

    from liverec.data import movielens

    def fake_fetch(url: str, target: Path) -> None:
        assert url.endswith("/ml-100k.zip")
        with zipfile.ZipFile(target, "w") as zf:
            zf.writestr("ml-100k/u.data", "1\t2\t3\t4\n")

    monkeypatch.setattr(movielens, "_fetch", fake_fetch)
    with pytest.raises(DataError, match="md5 checksum"):
        download_movielens("ml-100k", tmp_path)
    assert not (tmp_path / "ml-100k").exists()
    monkeypatch.setattr(movielens, "verify_md5", lambda path, expected: None)
    dest = download_movielens("ml-100k", tmp_path)
    assert dest == tmp_path / "ml-100k" and (dest / "u.data").is_file()
    assert download_movielens("ml-100k", tmp_path) == dest  # cached: no second fetch needed
    with pytest.raises(DataError, match="unknown MovieLens variant"):
        download_movielens("ml-25m", tmp_path)


def test_cache_root(monkeypatch, tmp_path):
    monkeypatch.setenv("LIVEREC_CACHE", str(tmp_path))
    assert cache_root() == tmp_path / "datasets"
    assert cache_root(tmp_path / "c") == tmp_path / "c"
    monkeypatch.delenv("LIVEREC_CACHE")
    assert cache_root() == Path.home() / ".cache" / "liverec" / "datasets"


# ----------------------------------------------------------------------------- real data

def _real_root() -> Path:
    from liverec.data.registry import default_data_root

    root = default_data_root(None)
    if not root.is_dir():
        pytest.skip(f"data root {root} does not exist")
    return root


@pytest.mark.realdata
def test_real_beauty_loads_fast():
    from liverec.data.registry import s3rec_with_sidecars

    root = _real_root()
    start = time.perf_counter()
    ds = s3rec_with_sidecars(root / "Beauty" / "Beauty.txt")
    elapsed = time.perf_counter() - start
    assert (ds.n_users, ds.n_items, ds.interactions.height) == (22_363, 12_101, 198_502)
    assert ds.items.filter(pl.col("title") != "").height > 12_000
    assert elapsed < 2.0, f"Beauty took {elapsed:.2f}s"
