"""Registry names, data root resolution, format detection; real-data counts (``-m realdata``)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import polars as pl
import pytest

from liverec.config import DataConfig, SyntheticConfig
from liverec.data.registry import REGISTRY, default_data_root, detect_format, load_dataset
from liverec.errors import ConfigError, DataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def fake_root(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write(root / "Beauty" / "Beauty.txt", "1 1 2 3\n2 2 3\n")
    write(root / "Beauty" / "Beauty_item2attributes.json", json.dumps({"1": [5], "3": [6, 7]}))
    write(root / "Beauty" / "Beauty_item_titles.tsv", "item_id\tasin\ttitle\n2\tB2\tSoap\n")
    write(root / "LastFM" / "LastFM.txt", "1 4 5\n")
    write(root / "Beauty_BERT4Rec" / "beauty.txt", "1 1\n1 2\n2 1\n")
    write(root / "ml-100k" / "u.data", "1\t5\t3\t10\n2\t6\t4\t20\n")
    write(root / "ml-latest-small" / "ratings.csv", "userId,movieId,rating,timestamp\n1,2,3,4\n")
    write(root / "ml-1m" / "ratings.dat", "1::2::3::4\n")
    return root


def test_default_data_root_order(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEREC_DATA", str(tmp_path / "env"))
    assert default_data_root(str(tmp_path / "cfg")) == tmp_path / "cfg"
    assert default_data_root(None) == tmp_path / "env"
    monkeypatch.delenv("LIVEREC_DATA")
    monkeypatch.chdir(tmp_path)
    assert default_data_root(None).resolve() == (tmp_path.parent / "shared" / "data").resolve()
    with pytest.raises(DataError) as exc:
        default_data_root(None, must_exist=True)
    msg = str(exc.value)
    assert "data.data_root" in msg and "$LIVEREC_DATA" in msg and "../shared/data" in msg


def test_registry_names_on_fake_root(fake_root):
    expect = {
        "beauty": (2, 3, 5),
        "lastfm": (1, 2, 2),
        "beauty-bert4rec": (2, 2, 3),
        "ml-100k": (2, 2, 2),
        "ml-latest-small": (1, 1, 1),
        "ml-1m": (1, 1, 1),
    }
    for name, counts in expect.items():
        ds = load_dataset(DataConfig(source=name, data_root=str(fake_root)))
        assert ds.name == name
        assert (ds.n_users, ds.n_items, ds.interactions.height) == counts, name
    beauty = load_dataset(DataConfig(source="beauty", data_root=str(fake_root))).items
    assert beauty.rows() == [("1", "", "", ["5"]), ("2", "Soap", "", []), ("3", "", "", ["6", "7"])]


def test_registry_uses_env_root(fake_root, monkeypatch):
    monkeypatch.setenv("LIVEREC_DATA", str(fake_root))
    assert load_dataset(DataConfig(source="lastfm")).n_items == 2


def test_missing_registry_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DataConfig(source="beauty", data_root=str(tmp_path / "nowhere")))
    with pytest.raises(DataError, match=r"Beauty\.txt not found"):
        load_dataset(DataConfig(source="beauty", data_root=str(tmp_path)))
    with pytest.raises(DataError, match=r"ml-1m not found \(download it with"):
        load_dataset(DataConfig(source="ml-1m", data_root=str(tmp_path)))


def test_synthetic_needs_no_root(tmp_path, monkeypatch):
    monkeypatch.setenv("LIVEREC_DATA", str(tmp_path / "nowhere"))
    cfg = DataConfig(source="synthetic", synthetic=SyntheticConfig(n_users=5, n_items=9))
    assert load_dataset(cfg).n_users == 5


def test_unknown_name_lists_registry(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError) as exc:
        load_dataset(DataConfig(source="beuaty"))
    for name in REGISTRY:
        assert name in str(exc.value)


@pytest.mark.parametrize(
    ("name", "text", "fmt"),
    [
        ("a.txt", "1 1 2 3\n2 4\n3 5 6\n", "s3rec"),
        ("b.txt", "1 1\n1 2\n2 3\n", "pairs"),
        ("c.txt", "a b\nc d\n", "pairs"),  # ids are any strings
        ("ratings.dat", "1::2::3::4\n1::3::3::5\n", "movielens"),
        ("u.data", "1\t2\t3\t4\n", "movielens"),
        ("r.csv", "user,item\n", "csv"),
        ("r.tsv", "user\titem\n", "tsv"),
        ("r.parquet", "", "parquet"),
    ],
)
def test_detect_format(tmp_path, name, text, fmt):
    assert detect_format(write(tmp_path / name, text)) == fmt


@pytest.mark.parametrize(
    ("text", "pattern"),
    [("", "file is empty"), ("a b c\nd e f\n", "cannot detect the format"),
     ("x\n", "cannot detect")],
)
def test_detect_format_errors(tmp_path, text, pattern):
    with pytest.raises(DataError, match=rf"odd\.txt: {pattern}"):
        detect_format(write(tmp_path / "odd.txt", text))


def test_load_paths_with_detection_and_sidecars(tmp_path):
    s3 = write(tmp_path / "Shop.txt", "1 1 2 3\n2 4\n3 5 6\n")
    write(tmp_path / "Shop_item2attributes.json", json.dumps({"1": [9]}))
    write(tmp_path / "Shop_item_titles.tsv", "item_id\tasin\ttitle\n4\tB4\tComb\n")
    ds = load_dataset(DataConfig(source=str(s3)))
    assert ds.name == "Shop" and ds.interactions.height == 6
    rows = {r["item"]: r for r in ds.items.to_dicts()}
    assert rows["1"]["attributes"] == ["9"] and rows["4"]["title"] == "Comb"
    pairs = write(tmp_path / "p.txt", "1 1\n1 2\n")
    assert load_dataset(DataConfig(source=str(pairs))).interactions.height == 2
    ml = write(tmp_path / "ml" / "u.data", "1\t5\t3\t10\n")
    assert load_dataset(DataConfig(source=str(ml.parent))).name == "ml-100k"
    csv = write(tmp_path / "t.csv", "u,i\na,b\n")
    cfg = DataConfig(source=str(csv), user_col="u", item_col="i", time_col=None)
    assert load_dataset(cfg).interactions.rows() == [("a", "b", 0)]
    parquet = tmp_path / "t.parquet"
    pl.DataFrame({"user": ["a"], "item": ["b"], "timestamp": [7]}).write_parquet(parquet)
    assert load_dataset(DataConfig(source=str(parquet))).interactions["ts"].to_list() == [7]


def test_explicit_format_wins_and_unknown_format(tmp_path):
    path = write(tmp_path / "x.txt", "1 1\n1 2\n")
    assert load_dataset(DataConfig(source=str(path), format="s3rec")).interactions.height == 2
    with pytest.raises(ConfigError, match="data.format: 'xml' is not supported; valid values"):
        DataConfig(source=str(path), format="xml")  # checked when the config is built


# ----------------------------------------------------------------------------- real data

REAL = {
    "beauty": (22_363, 12_101, 198_502),
    "lastfm": (1_090, 3_646, 52_551),
    "beauty-bert4rec": (40_226, 54_542, 353_962),
    "ml-100k": (943, 1_682, 100_000),
    "ml-latest-small": (610, 9_724, 100_836),
    "ml-1m": (2_999, 3_615, 487_650),  # the timed ratings (users 1..2999) in our data folder
}


@pytest.mark.realdata
@pytest.mark.parametrize("name", list(REAL))
def test_real_dataset_counts(name):
    root = default_data_root(None)
    if not root.is_dir():
        pytest.skip(f"data root {root} does not exist")
    start = time.perf_counter()
    ds = load_dataset(DataConfig(source=name))
    elapsed = time.perf_counter() - start
    assert (ds.n_users, ds.n_items, ds.interactions.height) == REAL[name]
    assert ds.items.height == ds.n_items
    if name == "beauty":
        assert elapsed < 2.0, f"Beauty took {elapsed:.2f}s"
