"""Layered configuration: packaged YAML defaults < method preset < user file < ``key=value``.

Configs are plain nested dicts. Every key of a later layer must already exist in an earlier one
(a typo is an error, not a silently ignored setting), and an override must keep the value's type.
A method preset may introduce its own keys under ``method``, and any layer may name new feature
sets under ``features.dims`` and ``features.frames`` (any per-segment features, e.g. CLIP).

:func:`validate_config` checks every value against what it may be (ranges, choices, option
combinations) before a run reads any data; each method declares the rules of its own options.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from avvp.registry import unknown_name_message

if TYPE_CHECKING:
    from avvp.methods.base import Method

Config = dict[str, Any]
# Tables keyed by feature-set name: new names are data, not typos.
FEATURE_TABLES = ("features.dims", "features.frames")
BASE_CONFIG = "base"  # the defaults every preset builds on; not a method
SYNTHETIC = "synthetic"  # data.root naming the built-in synthetic set, not a folder
# Keys holding a path, saved resolved: a run folder then means the same from any directory, and
# one folder written two ways ("data", "./data") is one config. data.root may also be SYNTHETIC.
PATH_KEYS = (
    "data.root",
    "data.annotations",
    "data.video_labels",
    "train.init_from",
    "method.visual_labels",
    "method.audio_labels",
    "method.base_run",
    "method.estimator_run",
)
LARGEST_SEED = 2**32 - 1  # numpy's seeds are 32-bit
PRECISIONS = ("fp32", "bf16")  # train.precision: the model's forward pass in training


class ConfigError(ValueError):
    """An unknown key, a value of the wrong type, or a value outside what the key allows."""


def method_presets() -> list[str]:
    """The methods ``--method`` accepts: every packaged preset but ``base``."""
    folder = resources.files("avvp") / "configs"
    return sorted(
        p.name.removesuffix(".yaml")
        for p in folder.iterdir()
        if p.name.endswith(".yaml") and p.name != f"{BASE_CONFIG}.yaml"
    )


def packaged_config(name: str) -> Config:
    """A YAML file shipped in ``avvp/configs`` (``base``, ``han``, ``poibin``, ...)."""
    path = resources.files("avvp") / "configs" / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(unknown_name_message("packaged method preset", name, method_presets()))
    return yaml.safe_load(path.read_text()) or {}


RECIPE_PREFIX = "recipe:"


def recipe_path(name: str) -> Path:
    """The packaged recipe ``avvp/configs/recipes/NAME.yaml`` (a config layer for a setup that
    combines runs, e.g. ``poibin_refine``), or an error listing the recipes."""
    folder = resources.files("avvp") / "configs" / "recipes"
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))
        raise ConfigError(f"no recipe {name!r}; available: {', '.join(known)}")
    return Path(str(path))


def load_yaml(path: str | Path) -> Config:
    """A config layer: a YAML file, or ``recipe:NAME`` for a packaged recipe."""
    if str(path).startswith(RECIPE_PREFIX):
        path = recipe_path(str(path)[len(RECIPE_PREFIX) :])
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {error.start}); save the config file as UTF-8"
        ) from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: {_yaml_problem(error)}; fix the YAML syntax there") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: a config file must hold a mapping, found {type(loaded).__name__}"
        )
    return loaded


def _yaml_problem(error: yaml.YAMLError) -> str:
    """'line L, column C: problem' of a YAML error (1-based, as editors count)."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    where = "" if mark is None else f"line {mark.line + 1}, column {mark.column + 1}: "
    return f"{where}{problem}" + (f" ({context})" if context else "")


def merge(
    base: Mapping[str, Any], layer: Mapping[str, Any], where: str, open_keys: Iterable[str] = ()
) -> Config:
    """``base`` updated by ``layer``; keys not in ``base`` are errors except under ``open_keys``."""
    merged = copy.deepcopy(dict(base))
    open_keys = set(open_keys)
    for key, value in layer.items():
        path = f"{where}.{key}" if where else key
        if key not in merged:
            if _is_open(where, open_keys) or (not where and key in open_keys):
                merged[key] = copy.deepcopy(value)
                continue
            raise ConfigError(f"unknown config key {path!r}; known: {', '.join(sorted(merged))}")
        if isinstance(merged[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"config key {path!r} is a section; got {value!r}")
            merged[key] = merge(merged[key], value, path, open_keys)
        else:
            merged[key] = _checked(path, merged[key], value)
    return merged


def _is_open(where: str, open_keys: set[str]) -> bool:
    return any(where == key or where.startswith(key + ".") for key in open_keys)


def _checked(path: str, current: Any, value: Any) -> Any:
    if current is None or value is None:
        return copy.deepcopy(value)
    if isinstance(current, bool) != isinstance(value, bool):
        raise ConfigError(f"config key {path!r} expects {type(current).__name__}, got {value!r}")
    if isinstance(current, float) and isinstance(value, int):
        return float(value)
    if isinstance(current, str) and isinstance(value, int):
        # YAML reads data.audio_gt=2024 as a number; the key holds the text.
        return str(value)
    if not isinstance(value, type(current)):
        raise ConfigError(f"config key {path!r} expects {type(current).__name__}, got {value!r}")
    return copy.deepcopy(value)


def parse_overrides(overrides: Iterable[str]) -> Config:
    """``["optim.lr=1e-3", "train.epochs=5"]`` -> nested dict, values parsed as YAML scalars."""
    nested: Config = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not key=value")
        key, text = item.split("=", 1)
        value = yaml.safe_load(text) if text else ""
        if isinstance(value, str) and _looks_like_float(text):
            value = float(text)
        node = nested
        parts = key.strip().split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r} conflicts with another override")
        node[parts[-1]] = value
    return nested


def _looks_like_float(text: str) -> bool:
    # YAML 1.1 reads "1e-3" as a string; users mean a number.
    try:
        float(text)
    except ValueError:
        return False
    return True


# Options added after runs already existed whose default is not what those runs did (issue 13
# moved the PPL and PoiBin presets to their papers' recipes). A saved config without such a key
# is completed with the value that reproduces how it trained (a function of the saved config), so
# evaluating, resuming or comparing it sees what it did, not today's default. Not listed:
# train.flush_denormal, whose default (true) changes values below 1.2e-38 only, and the runs
# measured with and without it trained to bit-identical weights
# (benchmarks/results/denormal_speed.md): earlier runs count as the same training.
BEHAVIOUR_BEFORE: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "method.mil_loss": lambda saved: "han",
    "method.momentum_reading": lambda saved: "conventional",
    "method.inference_label_type": lambda saved: saved["method"].get("label_type", "soft"),
    "method.warmup_estep": lambda saved: True,
    "method.refine_fresh_optimizer": lambda saved: False,
}


def with_new_defaults(saved: Mapping[str, Any]) -> Config:
    """A saved run's config completed with the keys its method's preset gained since: at the
    behaviour before them where :data:`BEHAVIOUR_BEFORE` names one, else at their defaults
    (which new options are meant to be), so old runs load as they trained."""
    filled = _fill_missing(saved, resolve_config(saved["method"]["name"]))
    for key, before in BEHAVIOUR_BEFORE.items():
        section, name = key.split(".")
        if name in filled.get(section, {}) and name not in saved.get(section, {}):
            filled[section][name] = before(saved)
    return filled


def _fill_missing(config: Mapping[str, Any], defaults: Mapping[str, Any]) -> Config:
    filled = copy.deepcopy(dict(config))
    for key, value in defaults.items():
        if key not in filled:
            filled[key] = copy.deepcopy(value)
        elif isinstance(value, Mapping) and isinstance(filled[key], Mapping):
            filled[key] = _fill_missing(filled[key], value)
    return filled


def resolve_config(
    method: str, config_file: str | Path | None = None, overrides: Iterable[str] = ()
) -> Config:
    """The full config of a run: base, the method preset, a user file, then overrides."""
    if method not in method_presets():
        raise ConfigError(unknown_name_message("method", method, method_presets()))
    config = merge(
        packaged_config(BASE_CONFIG), packaged_config(method), "", ("method", *FEATURE_TABLES)
    )
    config["method"]["name"] = method
    if config_file is not None:
        config = merge(config, load_yaml(config_file), "", FEATURE_TABLES)
    return merge(config, parse_overrides(overrides), "", FEATURE_TABLES)


def resolve_paths(config: Mapping[str, Any]) -> Config:
    """``config`` with the relative paths of :data:`PATH_KEYS` made absolute (from the current
    directory); ``synthetic`` and null stay as they are."""
    resolved = copy.deepcopy(dict(config))
    for key in PATH_KEYS:
        section, name = key.split(".")
        value = resolved.get(section, {}).get(name)
        if isinstance(value, str) and value and not (key == "data.root" and value == SYNTHETIC):
            resolved[section][name] = str(Path(value).expanduser().resolve())
    return resolved


# ---- what each key accepts


@dataclass(frozen=True)
class Rule:
    """The values a config key accepts; ``allowed`` says which, for the error message."""

    allowed: str
    accepts: Callable[[Any], bool]
    message: str = "{key} must be {allowed}, got {value!r}"

    def problem(self, key: str, value: Any) -> str | None:
        if self.accepts(value):
            return None
        return self.message.format(key=key, allowed=self.allowed, value=value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(
    low: float | None = None,
    high: float | None = None,
    *,
    integer: bool = False,
    above: bool = False,
    nullable: bool = False,
) -> Rule:
    """A finite number (an int with ``integer``) >= ``low`` (> with ``above``) and <= ``high``."""
    kind = "an integer " if integer else ""
    if low is not None and high is not None:
        allowed = f"{kind}in {'(' if above else '['}{low}, {high}]"
    elif low is not None:
        allowed = f"{kind}{'>' if above else '>='} {low}"
    else:
        allowed = kind.strip() or "a number"

    def accepts(value: Any) -> bool:
        if value is None:
            return nullable
        if not _is_number(value) or (integer and not isinstance(value, int)):
            return False
        if low is not None and (value <= low if above else value < low):
            return False
        return high is None or value <= high

    return Rule(f"null or {allowed}" if nullable else allowed, accepts)


def one_of(values: Iterable[str]) -> Rule:
    """One of ``values`` (e.g. the members of a :class:`avvp.choices.Choice`)."""
    values = [str(value) for value in values]
    # Worded as avvp.choices.Choice.parse words the same mistake.
    return Rule(
        f"one of {', '.join(values)}",
        lambda value: value in values,
        "unknown {key} {value!r}; expected {allowed}",
    )


def boolean() -> Rule:
    return Rule("true or false", lambda value: isinstance(value, bool))


def path_string(nullable: bool = False) -> Rule:
    """A non-empty path string (null too with ``nullable``); whether it exists is checked where
    it is read."""

    def accepts(value: Any) -> bool:
        return (value is None and nullable) or (isinstance(value, str) and value != "")

    return Rule("null or a path" if nullable else "a path", accepts)


def _is_device(value: Any) -> bool:
    if value == "auto":
        return True
    if not isinstance(value, str):
        return False
    import torch

    try:
        torch.device(value)
    except (RuntimeError, ValueError):
        return False
    return True


def _base_rules() -> dict[str, Rule]:
    """Rules of the keys of ``base.yaml`` (imports kept here: this module loads without numpy)."""
    from avvp.data.annotations import AudioGroundTruth
    from avvp.evaluation.metrics import Gate, IoUMode
    from avvp.evaluation.summary import LEVELS, METRICS

    return {
        "seed": number(0, LARGEST_SEED, integer=True),
        "data.root": path_string(),
        "data.annotations": path_string(nullable=True),
        "data.audio_gt": one_of(AudioGroundTruth),
        "data.cache": boolean(),
        "data.synthetic_videos": number(3, integer=True),  # one video a split at least
        "data.synthetic_difficulty": number(0, nullable=True),
        "data.train_videos": number(1, integer=True, nullable=True),
        "data.train_subset_seed": number(0, LARGEST_SEED, integer=True),
        "data.video_labels": path_string(nullable=True),
        "model.d_model": number(1, integer=True),
        "model.num_heads": number(1, integer=True),
        "model.dropout": number(0, 1),
        "model.feedforward": number(1, integer=True),
        "model.num_layers": number(0, integer=True),
        "optim.lr": number(0, above=True),
        "optim.batch_size": number(1, integer=True),
        "optim.epochs": number(1, integer=True),
        "optim.lr_step": number(1, integer=True),
        "optim.lr_gamma": number(0, above=True),
        "optim.weight_decay": number(0),
        "train.device": Rule("auto, cpu, cuda, cuda:N or another torch device", _is_device),
        "train.num_workers": number(0, integer=True),
        "train.select_metric": one_of(f"{level}.{name}" for level in LEVELS for name in METRICS),
        "train.progress": boolean(),
        "train.precision": one_of(PRECISIONS),
        "train.flush_denormal": boolean(),
        "train.init_from": path_string(nullable=True),
        "eval.threshold": number(0, 1),
        "eval.gate": one_of(Gate),
        "eval.iou": one_of(IoUMode),
    }


def _feature_problems(features: Mapping[str, Any]) -> list[str]:
    problems = []
    dims, frames = features.get("dims"), features.get("frames")
    if not isinstance(dims, Mapping) or not isinstance(frames, Mapping):
        return ["features.dims and features.frames must be tables of feature-set name -> int"]
    for table, values in (("dims", dims), ("frames", frames)):
        for name, value in values.items():
            problems.append(number(1, integer=True).problem(f"features.{table}.{name}", value))
    problems += [
        f"features.frames.{name} names a feature set without a dimension in features.dims"
        for name in frames
        if name not in dims
    ]
    for stream in ("audio", "visual"):
        names = features.get(stream)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            problems.append(f"features.{stream} must be a non-empty list of feature sets")
            continue
        problems += [
            f"features.{stream} names {name!r}, which has no dimension in features.dims "
            f"(known: {', '.join(dims)}); add features.dims.{name}=D"
            for name in names
            if name not in dims
        ]
    return problems


def _model_problems(model: Mapping[str, Any], models: list[str]) -> list[str]:
    if model["name"] not in models:
        return [unknown_name_message("model.name", model["name"], models)]
    heads, width = model["num_heads"], model["d_model"]
    # Attention splits d_model across the heads.
    if _is_number(heads) and heads > 0 and _is_number(width) and width % heads:
        return [f"model.d_model ({width}) must be a multiple of model.num_heads ({heads})"]
    return []


def rule_problems(section: Mapping[str, Any], rules: Mapping[str, Rule], where: str) -> list[str]:
    """Problems of the keys of ``section`` that ``rules`` cover; ``where`` prefixes key names."""
    return [
        problem
        for key, rule in rules.items()
        if key in section and (problem := rule.problem(f"{where}{key}", section[key]))
    ]


def method_problems(method: type[Method], config: Config, training: bool = True) -> list[str]:
    """What is wrong with the ``method`` section for ``method`` (its rules and combinations),
    and, with ``training``, a label file in ``data.video_labels`` it would not read."""
    problems = [
        *rule_problems(config["method"], method.OPTIONS, "method."),
        *method.config_problems(config, training),
    ]
    labelled = config["data"].get("video_labels") is not None
    if training and labelled and not method.TRAINS_ON_VIDEO_LABELS:
        from avvp import registry

        able = [
            name
            for name in registry.available("method")
            if registry.get("method", name).TRAINS_ON_VIDEO_LABELS
        ]
        problems.append(
            f"data.video_labels: method {config['method']['name']} does not train on "
            f"video-level label files (methods that do: {', '.join(able)}); unset "
            "data.video_labels or train one of those"
        )
    return problems


def _video_label_problems(config: Config) -> list[str]:
    """What is wrong with ``data.video_labels`` that shows before any data is read: the file
    (missing, invalid) and, where the train split's ids can be read from its CSV alone, the
    train videos the file lacks. The method checks the coverage again on the loaded split."""
    path = config["data"].get("video_labels")
    if not isinstance(path, str) or not path:
        return []  # null, or a bad value its rule reports
    from avvp.pseudo_labels import load_video_labels

    try:
        labels = load_video_labels(Path(path))
    except (OSError, ValueError) as error:
        return [f"data.video_labels: {error}"]
    video_ids = _train_video_ids(config)
    if video_ids is not None:
        try:
            labels.aligned(video_ids, "train videos")
        except ValueError as error:
            return [f"data.video_labels: {error}; label every train video"]
    return []


def _train_video_ids(config: Config) -> list[str] | None:
    """The ids of the videos a run trains on, from the split CSV alone; None where that cannot
    tell (the built-in synthetic set, which may not exist yet, or annotations the data load will
    report on)."""
    root = config["data"]["root"]
    if root == SYNTHETIC or not Path(root).is_dir():
        return None
    from avvp.data.annotations import LLPAnnotations
    from avvp.training.data import train_subset

    try:
        annotations = LLPAnnotations(config["data"]["annotations"] or root, warn=False)
        ids = annotations.weak("train").video_ids
        indices = train_subset(config, len(ids))
    except (OSError, ValueError):
        return None
    return list(ids) if indices is None else [ids[index] for index in indices]


def raise_problems(problems: Iterable[str | None]) -> None:
    """One :class:`ConfigError` listing every problem, if there is any."""
    found = [problem for problem in problems if problem]
    if found:
        raise ConfigError("; ".join(found))


def validate_config(config: Config, training: bool = True) -> None:
    """Check every value of a resolved config before anything is read or written.

    Raises :class:`ConfigError` naming each bad key, its value and what it accepts. With
    ``training``, what only training reads is checked too (e.g. VPLAN's label files exist, the
    file of ``data.video_labels`` is valid and covers the train split).
    """
    from avvp import registry  # the method and model modules import this one

    problems: list[str | None] = []
    rules = _base_rules()
    for key, rule in rules.items():
        section, _, name = key.rpartition(".")
        values = config.get(section, {}) if section else config
        if name not in values:
            problems.append(f"{key} is missing")
        else:
            problems.append(rule.problem(key, values[name]))
    problems += _feature_problems(config["features"])
    problems += _model_problems(config["model"], registry.available("model"))
    name, methods = config["method"]["name"], registry.available("method")
    if name not in methods:
        problems.append(unknown_name_message("method.name", name, methods))
    else:
        problems += method_problems(registry.get("method", name), config, training)
    if training:
        problems += _video_label_problems(config)
    raise_problems(problems)
