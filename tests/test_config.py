import json

import pytest

from liverec.config import (
    RunConfig,
    apply_overrides,
    dump_config,
    from_dict,
    load_config,
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
