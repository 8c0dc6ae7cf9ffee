import copy

import pytest

from avvp.config import ConfigError, merge, parse_overrides, resolve_config, with_new_defaults


def test_resolve_han_defaults_and_overrides():
    config = resolve_config(
        "han", overrides=["optim.lr=1e-3", "optim.epochs=5", "eval.gate=modality"]
    )
    assert config["method"]["name"] == "han"
    assert config["optim"]["lr"] == pytest.approx(1e-3)
    assert isinstance(config["optim"]["lr"], float)
    assert config["optim"]["epochs"] == 5
    assert config["eval"]["gate"] == "modality"
    assert config["features"]["dims"]["res152"] == 2048


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match=r"optim\.lrr"):
        resolve_config("han", overrides=["optim.lrr=1"])


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match=r"optim\.epochs"):
        resolve_config("han", overrides=["optim.epochs=many"])
    with pytest.raises(ConfigError, match=r"data\.cache"):
        resolve_config("han", overrides=["data.cache=3"])


def test_int_accepted_where_float_expected():
    assert resolve_config("han", overrides=["optim.lr=1"])["optim"]["lr"] == 1.0


def test_user_file_layer(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  batch_size: 4\n")
    assert resolve_config("han", config_file=path)["optim"]["batch_size"] == 4
    path.write_text("optim:\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match=r"optim\.batchsize"):
        resolve_config("han", config_file=path)


def test_unknown_method_preset():
    with pytest.raises(ConfigError, match="no packaged config"):
        resolve_config("nonexistent")


def test_parse_overrides_nested():
    assert parse_overrides(["a.b=1", "a.c=x", "d=[1, 2]"]) == {"a": {"b": 1, "c": "x"}, "d": [1, 2]}
    with pytest.raises(ConfigError):
        parse_overrides(["novalue"])


def test_merge_open_keys():
    merged = merge({"method": {"name": "x"}}, {"method": {"tau": 0.1}}, "", open_keys=("method",))
    assert merged["method"] == {"name": "x", "tau": 0.1}


def test_any_layer_may_add_a_feature_set_but_not_other_keys(tmp_path):
    overrides = ["features.dims.clip=512", "features.frames.clip=1", "features.visual=[clip]"]
    config = resolve_config("han", overrides=overrides)
    assert config["features"]["dims"]["clip"] == 512
    assert config["features"]["frames"]["clip"] == 1
    assert config["features"]["visual"] == ["clip"]
    user_file = tmp_path / "clip.yaml"
    user_file.write_text("features:\n  dims: {clip_l14: 768}\n")
    assert resolve_config("han", user_file)["features"]["dims"]["clip_l14"] == 768
    with pytest.raises(ConfigError, match=r"features\.dim\b"):
        resolve_config("han", overrides=["features.dim.clip=512"])
    with pytest.raises(ConfigError, match=r"method\.tua"):
        resolve_config("poibin", overrides=["method.tua=em"])


def test_a_saved_config_gains_the_options_added_since_at_their_defaults():
    current = resolve_config("ppl", overrides=["method.k=3", "optim.lr=1e-3"])
    saved = copy.deepcopy(current)
    del saved["method"]["selection"], saved["method"]["momentum_warmup"]  # older avvp
    completed = with_new_defaults(saved)
    assert completed == current  # the saved values (k, lr) stay; the missing keys are defaults
    assert "selection" not in saved["method"]  # the saved config itself is left alone
