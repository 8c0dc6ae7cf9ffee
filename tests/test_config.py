import copy
import re

import pytest

from avvp.config import (
    PATH_KEYS,
    ConfigError,
    load_yaml,
    merge,
    method_presets,
    packaged_config,
    parse_overrides,
    resolve_config,
    resolve_paths,
    validate_config,
    with_new_defaults,
)
from avvp.registry import available


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


def test_digits_accepted_where_text_expected():
    assert resolve_config("han", overrides=["data.audio_gt=2024"])["data"]["audio_gt"] == "2024"


def test_user_file_layer(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  batch_size: 4\n")
    assert resolve_config("han", config_file=path)["optim"]["batch_size"] == 4
    path.write_text("optim:\n  batchsize: 4\n")
    with pytest.raises(ConfigError, match=r"optim\.batchsize"):
        resolve_config("han", config_file=path)


def test_unknown_method_gets_the_close_match_and_base_is_no_method():
    with pytest.raises(ConfigError, match=re.escape("unknown method 'hna' (did you mean 'han'?)")):
        resolve_config("hna")
    with pytest.raises(ConfigError, match=r"unknown method 'base'; available: han, .*poibin"):
        resolve_config("base")
    assert "base" not in method_presets()
    with pytest.raises(ConfigError) as error:
        packaged_config("nonexistent")
    assert "base" not in str(error.value)


def test_the_method_presets_are_the_registered_methods():
    assert set(method_presets()) <= set(available("method"))
    assert {"han", "poibin", "ppl", "vplan"} <= set(method_presets())


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


@pytest.mark.parametrize(
    ("method", "missing", "expected"),
    [
        (
            "ppl",
            ["mil_loss", "momentum_reading", "inference_label_type"],
            {"mil_loss": "han", "momentum_reading": "conventional", "inference_label_type": "hard"},
        ),
        (
            "poibin",
            ["warmup_estep", "refine_fresh_optimizer"],
            {"warmup_estep": True, "refine_fresh_optimizer": False},
        ),
    ],
)
def test_a_saved_config_without_an_option_that_changed_behaviour_gets_the_behaviour_before(
    method, missing, expected
):
    """A run from before issue 13's recipes trained with HAN's loss and MoCo's EMA (PPL), the
    E-step in the warm-up and no optimiser restart (PoiBin): it is completed with those, not
    with today's defaults, so resuming or comparing it sees what it did."""
    current = resolve_config(
        method, overrides=["method.label_type=hard"] if method == "ppl" else []
    )
    saved = copy.deepcopy(current)
    for name in missing:
        del saved["method"][name]
    del saved["train"]["flush_denormal"]  # changes nothing measurable: today's default
    completed = with_new_defaults(saved)
    assert {name: completed["method"][name] for name in missing} == expected
    assert completed["train"]["flush_denormal"] is True
    assert {name: current["method"][name] for name in missing} != expected  # today's differ
    assert with_new_defaults(current) == current  # a config that has the keys keeps them


def leaf_keys(config, prefix=""):
    for key, value in config.items():
        if isinstance(value, dict):
            yield from leaf_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def with_value(config, dotted, value):
    changed = copy.deepcopy(config)
    *sections, name = dotted.split(".")
    node = changed
    for section in sections:
        node = node[section]
    node[name] = value
    return changed


def bad_value(value):
    """A value no key of its type accepts (paths aside)."""
    if isinstance(value, bool):
        return "yes"
    if isinstance(value, int | float):
        return -1
    if isinstance(value, list):
        return []
    return "bogus"


@pytest.mark.parametrize("method", ["han", "poibin", "ppl", "vplan"])
def test_every_key_of_every_preset_is_checked(method):
    config = resolve_config(method)
    validate_config(config, training=method != "vplan")  # VPLAN trains only on a label file
    for key, value in leaf_keys(config):
        if key in PATH_KEYS:
            continue
        with pytest.raises(ConfigError, match=re.escape(key)):
            validate_config(with_value(config, key, bad_value(value)), training=False)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lr=inf", "optim.lr must be > 0, got inf"),
        ("optim.epochs=null", "optim.epochs must be an integer >= 1, got None"),
        ("eval.threshold=1.5", "eval.threshold must be in [0, 1], got 1.5"),
        ("model.d_model=30", "model.d_model (30) must be a multiple of model.num_heads (4)"),
        ("features.visual=[clip]", "features.visual names 'clip', which has no dimension"),
        ("train.device=gpu", "train.device must be auto, cpu, cuda, cuda:N"),
        ("data.audio_gt=2023", "unknown data.audio_gt '2023'; expected one of 2024, pre2024"),
    ],
)
def test_validation_names_the_key_the_value_and_what_is_allowed(override, message):
    config = resolve_config("han", overrides=["model.num_heads=4", override])
    with pytest.raises(ConfigError, match=re.escape(message)):
        validate_config(config)


def test_a_vplan_run_needs_a_label_file_that_exists(tmp_path):
    with pytest.raises(ConfigError, match=re.escape("method.visual_labels=FILE")):
        validate_config(resolve_config("vplan"))
    missing = tmp_path / "labels.npz"
    config = resolve_config("vplan", overrides=[f"method.visual_labels={missing}"])
    with pytest.raises(ConfigError, match=re.escape(f"label file not found: {missing}")):
        validate_config(config)
    validate_config(config, training=False)  # evaluating reads no label file


def test_a_yaml_error_names_the_file_line_and_column(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("optim:\n  lr: 3e-4\n  epochs: [5\n  batch_size: 8\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: line 4, column 13")):
        load_yaml(path)
    path.write_bytes(b"optim:\n  lr: \xff\n")
    with pytest.raises(ConfigError, match=re.escape(f"{path}: not UTF-8")):
        load_yaml(path)


def test_paths_are_resolved_and_synthetic_stays(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = resolve_config(
        "vplan", overrides=["data.annotations=./ann", "method.visual_labels=labels/v.npz"]
    )
    resolved = resolve_paths(config)
    assert resolved["data"]["root"] == "synthetic"
    assert resolved["data"]["annotations"] == str(tmp_path / "ann")
    assert resolved["method"]["visual_labels"] == str(tmp_path / "labels" / "v.npz")
    assert resolved["method"]["audio_labels"] is None
    assert config["data"]["annotations"] == "./ann"  # the given config is left alone


def test_a_packaged_recipe_is_a_config_layer_by_name():
    refine = resolve_config("poibin", "recipe:poibin_refine")
    assert refine["optim"]["epochs"] == 5 and refine["optim"]["lr"] == 1e-4
    assert refine["method"]["warmup_epochs"] == 0 and refine["eval"]["gate"] == "global"
    with pytest.raises(ConfigError, match=r"no recipe 'nope'; available: .*poibin_refine"):
        resolve_config("poibin", "recipe:nope")


def test_the_ppl_on_han_recipe_is_avvps_earlier_ppl():
    """recipe:ppl_on_han restores PPL on HAN's network and loss with the conventional EMA."""
    earlier = resolve_config("ppl", "recipe:ppl_on_han")
    paper = resolve_config("ppl")
    assert (paper["model"]["name"], paper["method"]["mil_loss"]) == ("ppl", "paper")
    assert paper["method"]["momentum_reading"] == "literal"
    assert earlier["model"]["name"] == "han" and earlier["method"]["mil_loss"] == "han"
    assert earlier["method"]["momentum_reading"] == "conventional"
    validate_config(earlier)
