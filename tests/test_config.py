import dataclasses
import json
import typing

import pytest

from liverec.config import (
    DataConfig,
    EvalConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    check_paths,
    dump_config,
    from_dict,
    load_config,
    monitor_metric,
    to_dict,
)
from liverec.errors import ConfigError


def test_round_trip(tmp_path):
    cfg = apply_overrides(RunConfig(), ["train.lr=3e-4", "model.d_model=32", "eval.ks=[1,5]"])
    dump_config(cfg, tmp_path / "c.json")
    back = load_config(tmp_path / "c.json")
    assert back == cfg
    assert back.train.lr == 3e-4 and back.model.d_model == 32 and back.eval.ks == (1, 5)


def test_toml_and_partial(tmp_path):
    (tmp_path / "c.toml").write_text('name = "x"\n[train]\nlr = 0.01\n')
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.name == "x" and cfg.train.lr == 0.01 and cfg.model == RunConfig().model


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown key 'lrr'"),
        ("model.d_model=abc", "model.d_model: expected int"),
        ("model.d_model=1.5", "expected an integer"),
        ("nosuch.x=1", "no section 'nosuch'"),
        ("train.bf16=maybe", "expected true/false"),
        ("novalue", "key=value"),
    ],
)
def test_bad_overrides_are_clear(override, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(RunConfig(), [override])


def test_configs_are_frozen():
    cfg = RunConfig()
    with pytest.raises(AttributeError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_unknown_key_in_file(tmp_path):
    data = to_dict(RunConfig())
    data["model"]["dmodel"] = 3
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="dmodel"):
        load_config(tmp_path / "c.json")
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.json")
    assert from_dict(RunConfig, {}) == RunConfig()


# --- validated when read (issue 13, "Late validation"): one ConfigError line before any work


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.loss=bpr", "model.loss: 'bpr' is not supported; valid values: ce, sampled"),
        ("model.n_heads=3", "model.n_heads=3 does not divide model.d_model=64"),
        ("model.item_repr=bert", "valid values: id, mixed, pq, text, fusion"),
        ("model.lora_scopes=heads", "model.lora_scopes: 'heads' is not supported"),
        ("data.split=random", "valid values: leave_one_out, temporal"),
        ("data.format=xls", "valid values: s3rec, pairs, csv, tsv, parquet, movielens"),
        ("train.optimizer=lion", "valid values: adamw, adam, sgd"),
        ("train.device=gpu", "valid values: cpu, cuda, auto"),
        ("eval.baselines=[pop,bpr]", "eval.baselines: 'bpr' is not supported"),
        ("train.lr=nan", "train.lr: expected a finite number"),
        ("train.lr=inf", "train.lr: expected a finite number"),
        ("train.lr=-1", "train.lr must be >= 0"),
        ("train.epochs=0", "train.epochs must be >= 1"),
        ("model.dropout=1.0", r"model.dropout must be in \[0, 1\)"),
        ("data.temporal_test_fraction=0.5", r"must be in \(0, 0.5\)"),
        ("eval.ks=[]", "eval.ks must list at least one"),
        ("eval.ks=[10,10]", "distinct positive"),
        ("train.monitor=auc", "train.monitor: 'auc' is not a metric"),
        ("model.pq_bits=9", r"model.pq_bits must be in \[1, 8\]"),
    ],
)
def test_bad_values_fail_when_read(override, message):
    with pytest.raises(ConfigError, match=message) as exc:
        apply_overrides(RunConfig(), [override])
    assert "\n" not in str(exc.value)


def test_bad_values_fail_from_files_and_from_python(tmp_path):
    (tmp_path / "c.toml").write_text('[model]\nloss = "bpr"\n')
    with pytest.raises(ConfigError, match="model.loss"):
        load_config(tmp_path / "c.toml")
    with pytest.raises(ConfigError, match="divide"):
        ModelConfig(d_model=64, n_heads=3)
    with pytest.raises(ConfigError, match="train.amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ConfigError, match="valid values"):
        dataclasses.replace(RunConfig().model, name="nope")


def test_monitor_follows_the_ks_or_fails_at_once():
    assert monitor_metric(RunConfig()) == "ndcg@10"
    assert monitor_metric(apply_overrides(RunConfig(), ["eval.ks=[5,20]"])) == "ndcg@5"
    cfg = apply_overrides(RunConfig(), ["eval.ks=[5,20]", "train.monitor=HR@20"])
    assert cfg.train.monitor == "hr@20" and monitor_metric(cfg) == "hr@20"
    with pytest.raises(ConfigError, match=r"train.monitor=ndcg@10 is not computed: eval.ks is "
                                          r"\[5, 20\]; add 10 to eval.ks or use one of: hr@5"):
        apply_overrides(RunConfig(), ["eval.ks=[5,20]", "train.monitor=NDCG@10"])


def test_paths_must_exist(tmp_path):
    check_paths(RunConfig())  # synthetic, no paths
    check_paths(apply_overrides(RunConfig(), ["data.source=beauty"]))  # a registry name
    with pytest.raises(ConfigError, match="data.source: no such file or folder: x/y.csv"):
        check_paths(apply_overrides(RunConfig(), ["data.source=x/y.csv"]))
    with pytest.raises(ConfigError, match="data.data_root: no such folder"):
        check_paths(apply_overrides(RunConfig(), [f"data.data_root={tmp_path / 'nope'}"]))


def test_choices_match_the_registries():
    """The Literal choices in config.py are exactly what the code accepts."""
    from liverec.data.registry import FORMATS
    from liverec.evaluate.baselines import BASELINES
    from liverec.model.items import ITEM_EMBEDDERS
    from liverec.model.text_items import ADAPTORS

    hints = typing.get_type_hints
    assert set(typing.get_args(hints(DataConfig)["format"])[0].__args__) == set(FORMATS)
    # "auto" is resolved from the catalogue before a model is built (train/setup.py)
    assert set(hints(ModelConfig)["item_repr"].__args__) == set(ITEM_EMBEDDERS) | {"auto"}
    assert set(hints(ModelConfig)["adaptor"].__args__) == set(ADAPTORS)
    assert set(hints(EvalConfig)["baselines"].__args__[0].__args__) == set(BASELINES)


def test_every_shipped_run_config_is_valid():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "configs"
    for path in [*root.glob("beauty/*.json"), *root.glob("transfer/*.json")]:
        load_config(path)
