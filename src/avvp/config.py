"""Layered configuration: packaged YAML defaults < method preset < user file < ``key=value``.

Configs are plain nested dicts. Every key of a later layer must already exist in an earlier one
(a typo is an error, not a silently ignored setting), and an override must keep the value's type.
A method preset may introduce its own keys under ``method``, and any layer may name new feature
sets under ``features.dims`` and ``features.frames`` (any per-segment features, e.g. CLIP).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

Config = dict[str, Any]
# Tables keyed by feature-set name: new names are data, not typos.
FEATURE_TABLES = ("features.dims", "features.frames")


class ConfigError(ValueError):
    """An unknown key or a value of the wrong type."""


def packaged_config(name: str) -> Config:
    """A YAML file shipped in ``avvp/configs`` (``base``, ``han``, ``poibin``, ...)."""
    path = resources.files("avvp") / "configs" / f"{name}.yaml"
    if not path.is_file():
        available = sorted(
            p.name[:-5]
            for p in (resources.files("avvp") / "configs").iterdir()
            if p.name.endswith(".yaml")
        )
        raise ConfigError(f"no packaged config {name!r}; available: {', '.join(available)}")
    return yaml.safe_load(path.read_text()) or {}


def load_yaml(path: str | Path) -> Config:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    loaded = yaml.safe_load(path.read_text())
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: a config file must hold a mapping, found {type(loaded).__name__}"
        )
    return loaded


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


def with_new_defaults(saved: Mapping[str, Any]) -> Config:
    """A saved run's config completed with the keys its method's preset gained since, at their
    defaults (new options default to the behaviour before them), so old runs still load."""
    return _fill_missing(saved, resolve_config(saved["method"]["name"]))


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
    config = merge(
        packaged_config("base"), packaged_config(method), "", ("method", *FEATURE_TABLES)
    )
    config["method"]["name"] = method
    if config_file is not None:
        config = merge(config, load_yaml(config_file), "", FEATURE_TABLES)
    return merge(config, parse_overrides(overrides), "", FEATURE_TABLES)
