"""Checkpoints of the official HAN code as avvp runs (``avvp import-han``).

The official code (YapengTian/AVVP-ECCV20, ``nets/net_audiovisual.py``) saves the state dict of
its ``MMIL_Net`` (``main_avvp.py``: ``torch.save(model.state_dict(), ...)``). avvp's HAN
(:mod:`avvp.models.han`) computes the same network; the weights map one to one:

==========================================  ==============================================
official ``MMIL_Net``                       avvp ``HAN``
==========================================  ==============================================
``fc_a`` (128 -> 512, vggish)               ``audio_stem.projections.vggish``
``fc_v`` (2048 -> 512, res152; averaged     ``visual_stem.projections.res152`` (the average
over each segment's 8 frames after it)      of the 8 frames is taken before it: the same)
``fc_st`` (512 -> 512, r2plus1d_18)         ``visual_stem.projections.r2plus1d_18``
``fc_fusion`` (1024 -> 512)                 ``visual_stem.fusion``
``hat_encoder.layers.0.self_attn``          ``layers.0.self_attention``
``hat_encoder.layers.0.cm_attn``            ``layers.0.cross_attention``
``hat_encoder.layers.0.{linear,norm}{1,2}`` ``layers.0.{linear,norm}{1,2}``
``fc_prob`` / ``fc_frame_att`` / ``fc_av_att``  ``pooling.classifier`` / ``.time_attention`` /
                                            ``.modality_attention``
==========================================  ==============================================

``MMIL_Net`` also holds modules its ``forward`` never calls (``audio_encoder``,
``visual_encoder``, ``cmt_encoder``, and ``hat_encoder.norm1`` / ``norm2``, built with
``norm=None``): their weights are dropped, and ``meta.json`` lists them. One documented
difference: avvp clamps the global video probability at 1 (two softmaxes multiplied can sum to
more, see :class:`avvp.pooling.AttentiveMMILPooling`); the parse is the same, since it is
compared with 0.5.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import yaml
from torch import Tensor

from avvp.config import Config, resolve_config, resolve_paths, validate_config
from avvp.io_utils import atomic_torch_save, atomic_write_text, file_sha256, write_json
from avvp.training.run_folder import claim_run_folder
from avvp.training.run_info import run_metadata
from avvp.training.trainer import BEST_CHECKPOINT, build_model

SOURCE = "the official HAN code (YapengTian/AVVP-ECCV20, nets/net_audiovisual.py, MMIL_Net)"
# Official module prefix -> avvp HAN prefix; each is followed by ".weight" / ".bias" or, for the
# attention modules, by the parameter names nn.MultiheadAttention uses in both.
KEY_MAP = {
    "fc_a": "audio_stem.projections.vggish",
    "fc_v": "visual_stem.projections.res152",
    "fc_st": "visual_stem.projections.r2plus1d_18",
    "fc_fusion": "visual_stem.fusion",
    "hat_encoder.layers.0.self_attn": "layers.0.self_attention",
    "hat_encoder.layers.0.cm_attn": "layers.0.cross_attention",
    "hat_encoder.layers.0.linear1": "layers.0.linear1",
    "hat_encoder.layers.0.linear2": "layers.0.linear2",
    "hat_encoder.layers.0.norm1": "layers.0.norm1",
    "hat_encoder.layers.0.norm2": "layers.0.norm2",
    "fc_prob": "pooling.classifier",
    "fc_frame_att": "pooling.time_attention",
    "fc_av_att": "pooling.modality_attention",
}
# Modules of MMIL_Net that its forward never calls; their keys are expected and dropped.
UNUSED = re.compile(r"(audio_encoder|visual_encoder|cmt_encoder|hat_encoder\.norm[12])\..+")
# MMIL_Net's fixed architecture, as avvp config overrides (the rest is the han preset).
CONFIG_OVERRIDES = (
    "features.audio=[vggish]",
    "features.visual=[res152,r2plus1d_18]",
    "features.dims.vggish=128",
    "features.dims.res152=2048",
    "features.dims.r2plus1d_18=512",
    "features.frames.vggish=1",
    "features.frames.res152=8",
    "features.frames.r2plus1d_18=1",
    "model.name=han",
    "model.d_model=512",
    "model.num_heads=1",
    "model.feedforward=512",
    "model.num_layers=1",
    "model.dropout=0.1",
    # main_avvp.py's evaluation: segments >= 0.5, gated by the global video probability >= 0.5.
    "eval.threshold=0.5",
    "eval.gate=global",
)


class OfficialCheckpointError(ValueError):
    """A file that is not a state dict of the official ``MMIL_Net``; the message says why."""


def han_config(
    data_root: str | Path | None = None, annotations: str | Path | None = None
) -> Config:
    """The avvp config of the official network: the han preset with MMIL_Net's architecture."""
    overrides = list(CONFIG_OVERRIDES)
    if data_root is not None:
        overrides.append(f"data.root={data_root}")
    if annotations is not None:
        overrides.append(f"data.annotations={annotations}")
    config = resolve_paths(resolve_config("han", overrides=overrides))
    validate_config(config, training=False)
    return config


def convert_state_dict(
    official: Mapping[str, Any], source: str = "the checkpoint"
) -> tuple[dict[str, Tensor], list[str]]:
    """(avvp HAN's state dict, the dropped keys of unused modules) from an official ``MMIL_Net``
    state dict.

    Every key of MMIL_Net must be there with its shape, and no other: anything else is an
    :class:`OfficialCheckpointError` listing the unexpected, missing and mis-shaped keys
    (``source`` names the file).
    """
    expected = build_model(han_config()).state_dict()
    converted: dict[str, Tensor] = {}
    names: dict[str, str] = {}  # avvp key -> official key, for messages
    dropped, unexpected, misshaped = [], [], []
    for key, value in official.items():
        prefix = _mapped_prefix(key) if isinstance(key, str) else None
        if prefix is None or not isinstance(value, Tensor):
            if isinstance(key, str) and UNUSED.fullmatch(key):
                dropped.append(key)
            else:
                unexpected.append(str(key))
            continue
        ours = KEY_MAP[prefix] + key.removeprefix(prefix)
        names[ours] = key
        if ours not in expected:
            unexpected.append(key)
        elif value.shape != expected[ours].shape:
            misshaped.append(f"{key} {tuple(value.shape)} (expected {tuple(expected[ours].shape)})")
        else:
            converted[ours] = value.detach().to(torch.float32).clone()
    missing = [_official_name(key) for key in expected if key not in converted and key not in names]
    problems = [
        f"{what}: {', '.join(keys)}"
        for what, keys in (
            ("unexpected keys", unexpected),
            ("missing keys", missing),
            ("wrong shapes", misshaped),
        )
        if keys
    ]
    if problems:
        raise OfficialCheckpointError(
            f"{source} is not a state dict of the official HAN MMIL_Net ({'; '.join(problems)}); "
            "give the .pt file its main_avvp.py saves (torch.save(model.state_dict(), ...))"
        )
    return converted, dropped


def _mapped_prefix(key: str) -> str | None:
    return next((prefix for prefix in KEY_MAP if key.startswith(prefix + ".")), None)


def _official_name(avvp_key: str) -> str:
    for official, ours in KEY_MAP.items():
        if avvp_key.startswith(ours + "."):
            return official + avvp_key.removeprefix(ours)
    return avvp_key


def read_official_checkpoint(path: str | Path) -> Mapping[str, Any]:
    """The state dict in an official checkpoint file, read without running pickled code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"official HAN checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    # A damaged or foreign file fails with almost any exception type (see load_checkpoint).
    except Exception as error:
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise OfficialCheckpointError(
            f"{path} is not a readable PyTorch state dict ({reason}); give the .pt file the "
            "official main_avvp.py saves"
        ) from None
    if not isinstance(state, Mapping):
        raise OfficialCheckpointError(
            f"{path} holds a {type(state).__name__}, not a state dict; give the .pt file the "
            "official main_avvp.py saves (torch.save(model.state_dict(), ...))"
        )
    return state


def import_han(
    checkpoint: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    annotations: str | Path | None = None,
) -> Path:
    """Write the avvp run folder ``out`` (config.yaml, meta.json, best.pt) of an official HAN
    checkpoint; ``data_root`` / ``annotations`` become the run's ``data.root`` /
    ``data.annotations`` (default: the synthetic set, so pass ``--data`` to evaluate).

    ``out`` must be new or empty: a converted run never replaces anything.
    """
    checkpoint, out = Path(checkpoint), Path(out)
    if out.exists() and (not out.is_dir() or next(out.iterdir(), None) is not None):
        raise FileExistsError(
            f"--out {out} exists and is not empty; give a new folder for the converted run"
        )
    for flag, folder in (("--data", data_root), ("--annotations", annotations)):
        if folder is not None and not Path(folder).is_dir():
            raise FileNotFoundError(f"{flag} {folder} is not a folder; give the LLP dataset folder")
    config = han_config(data_root, annotations)
    model_state, dropped = convert_state_dict(read_official_checkpoint(checkpoint), str(checkpoint))
    model = build_model(config)
    model.load_state_dict(model_state)  # strict: convert_state_dict matched every key and shape
    source = {
        "path": str(checkpoint.resolve()),
        "sha256": file_sha256(checkpoint),
        "bytes": checkpoint.stat().st_size,
    }
    with claim_run_folder(out, files=(BEST_CHECKPOINT, "config.yaml", "meta.json")):
        atomic_write_text(out / "config.yaml", yaml.safe_dump(config, sort_keys=False))
        write_json(
            out / "meta.json",
            {
                "converted_from": SOURCE,
                "source": source,
                "dropped_unused_keys": dropped,
                **run_metadata(),
            },
        )
        # best.pt as the trainer saves it; no epoch or validation score exists for it.
        best = {
            "config": config,
            "epoch": None,
            "model": model.state_dict(),
            "method": {},
            "val_metrics": None,
            "converted_from": {"code": SOURCE, **source},
        }
        atomic_torch_save(best, out / BEST_CHECKPOINT)
    return out
