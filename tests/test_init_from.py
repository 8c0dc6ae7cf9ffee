"""``avvp train --init-from RUN``: a run starts from another run's best.pt weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_TRAINING as TINY

from avvp.cli import main
from avvp.training import trainer as trainer_module


@pytest.fixture(scope="module")
def source(dataset, tmp_path_factory) -> Path:
    """A finished HAN run, the run others start from."""
    run = tmp_path_factory.mktemp("source") / "han"
    assert main(["train", "--data", str(dataset), "--out", str(run), *TINY]) == 0
    return run


def train(dataset: Path, out: Path, *extra: str, method: str = "han") -> int:
    flags = ["--method", method, "--data", str(dataset), "--out", str(out), *TINY, *extra]
    return main(["train", *flags])


def record_start(monkeypatch) -> list[dict[str, dict[str, torch.Tensor]]]:
    """Per trainer, the model's weights (and PPL's momentum model's) as epoch 1 begins."""
    starts: list[dict[str, dict[str, torch.Tensor]]] = []
    original = trainer_module.Trainer.train_one_epoch

    def recording(self, epoch):
        if epoch == 0:
            copies = {"model": self.model}
            momentum = getattr(self.method, "momentum_model", None)
            if momentum is not None:
                copies["momentum"] = momentum
            starts.append(
                {
                    name: {key: value.clone() for key, value in model.state_dict().items()}
                    for name, model in copies.items()
                }
            )
        return original(self, epoch)

    monkeypatch.setattr(trainer_module.Trainer, "train_one_epoch", recording)
    return starts


def assert_same_weights(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]):
    assert found.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(found[name], value), name


def best_weights(run: Path) -> dict[str, torch.Tensor]:
    return torch.load(run / "best.pt", weights_only=False)["model"]


@pytest.mark.parametrize("method", ["han", "ppl"])
def test_a_run_starts_from_the_best_weights_of_another(
    dataset, source, tmp_path, monkeypatch, method
):
    starts = record_start(monkeypatch)
    run = tmp_path / "run"
    # The source is a HAN run; PPL's preset trains its own network unless told otherwise.
    on_han = ("model.name=han",) if method == "ppl" else ()
    assert train(dataset, run, "--init-from", str(source), *on_han, method=method) == 0
    assert len(starts) == 1
    assert_same_weights(starts[0]["model"], best_weights(source))
    if method == "ppl":  # the momentum model is a copy of the initialised model
        assert_same_weights(starts[0]["momentum"], best_weights(source))
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["train"]["init_from"] == str(source.resolve())
    # Without --init-from the start differs (a random initialisation).
    assert train(dataset, tmp_path / "fresh", *on_han, method=method) == 0
    name = "pooling.classifier.weight"
    assert not torch.equal(starts[1]["model"][name], starts[0]["model"][name])


def test_the_config_key_and_a_checkpoint_file_work_too(dataset, source, tmp_path, monkeypatch):
    starts = record_start(monkeypatch)
    assert train(dataset, tmp_path / "run", f"train.init_from={source / 'best.pt'}") == 0
    assert_same_weights(starts[0]["model"], best_weights(source))


def test_each_seed_starts_from_its_own_seed_of_a_seeds_run(
    dataset, seeds_run, tmp_path, monkeypatch
):
    starts = record_start(monkeypatch)
    run = tmp_path / "run"
    assert train(dataset, run, "--seeds", "2,1", "--init-from", str(seeds_run)) == 0
    for start, seed in zip(starts, (2, 1), strict=True):
        assert_same_weights(start["model"], best_weights(seeds_run / f"seed-{seed}"))
        config = yaml.safe_load((run / f"seed-{seed}" / "config.yaml").read_text())
        assert config["train"]["init_from"] == str((seeds_run / f"seed-{seed}").resolve())


def test_seeds_the_run_lacks_are_an_error(dataset, seeds_run, tmp_path, capsys):
    assert train(dataset, tmp_path / "run", "--seeds", "1,3", "--init-from", str(seeds_run)) == 2
    error = capsys.readouterr().err
    assert f"--init-from {seeds_run}: no best.pt in {seeds_run / 'seed-3'}" in error


def test_resume_continues_from_its_own_checkpoint(dataset, source, tmp_path, monkeypatch):
    uninterrupted = tmp_path / "full"
    assert train(dataset, uninterrupted, "--init-from", str(source)) == 0

    copied = tmp_path / "copied-source"
    copied.mkdir()
    (copied / "best.pt").write_bytes((source / "best.pt").read_bytes())
    killed = tmp_path / "killed"
    original = trainer_module.Trainer._run_epoch

    def run_then_die(self, writer):
        original(self, writer)
        raise KeyboardInterrupt("simulated kill after epoch 1")

    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", run_then_die)
    assert train(dataset, killed, "--init-from", str(copied)) == 130
    monkeypatch.setattr(trainer_module.Trainer, "_run_epoch", original)
    # The resumed run reads no init weights: a damaged source does not matter any more.
    (copied / "best.pt").write_bytes(b"damaged")
    assert train(dataset, killed, "--init-from", str(copied)) == 0
    metrics = [
        json.loads((run / "test_metrics.json").read_text()) for run in (uninterrupted, killed)
    ]
    assert metrics[0] == metrics[1]
    assert_same_weights(best_weights(killed), best_weights(uninterrupted))
    # Resuming under another source is a config difference.
    assert train(dataset, killed, "--init-from", str(source)) == 2


def no_data_load(monkeypatch):
    from avvp.training import data

    def refuse(*args, **kwargs):
        raise AssertionError("the data was loaded")

    monkeypatch.setattr(data, "load_splits", refuse)


def test_a_model_configured_otherwise_is_an_error_before_the_data_load(
    dataset, source, tmp_path, monkeypatch, capsys
):
    no_data_load(monkeypatch)
    flags = ["--init-from", str(source), "model.d_model=64", "model.num_heads=2"]
    assert train(dataset, tmp_path / "run", *flags) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"avvp train: error: --init-from (train.init_from) {source.resolve()}")
    assert "its model is configured otherwise than this run's" in error
    assert "model.d_model: 32 -> 64; model.num_heads: 1 -> 2." in error
    assert not (tmp_path / "run").exists()
    flags = ["--init-from", str(source), "features.visual=[res152]"]
    assert train(dataset, tmp_path / "run", *flags) == 2
    assert "features.visual: ['res152', 'r2plus1d_18'] -> ['res152']" in capsys.readouterr().err


def test_a_feature_set_the_model_does_not_read_does_not_count(source):
    from avvp.config import resolve_config

    config = resolve_config("han", overrides=[*TINY[1:], f"train.init_from={source}"])
    config["features"]["dims"]["clip"] = 512  # named, not read by the model
    assert_same_weights(trainer_module.load_init_weights(config), best_weights(source))


@pytest.mark.parametrize("broken", ["absent", "empty folder", "damaged", "not avvp"])
def test_a_source_without_readable_best_weights_is_an_error(
    dataset, tmp_path, monkeypatch, capsys, broken
):
    no_data_load(monkeypatch)
    given = tmp_path / "given"
    if broken != "absent":
        given.mkdir()
    if broken == "damaged":
        (given / "best.pt").write_bytes(b"not a checkpoint")
    if broken == "not avvp":
        torch.save({"weights": 1}, given / "best.pt")
    assert train(dataset, tmp_path / "run", "--init-from", str(given)) == 2
    error = capsys.readouterr().err
    expected = {
        "absent": f"--init-from (train.init_from) {given}: no best.pt there",
        "empty folder": f"--init-from (train.init_from) {given}: no best.pt there",
        "damaged": f"--init-from (train.init_from): {given / 'best.pt'} is not a readable",
        "not avvp": f"--init-from (train.init_from): {given / 'best.pt'} is not an avvp checkpoint",
    }[broken]
    assert error.startswith(f"avvp train: error: {expected}"), error


def test_a_run_cannot_start_from_itself(dataset, source, capsys):
    assert train(dataset, source, "--init-from", str(source)) == 2
    assert "is this run's own folder" in capsys.readouterr().err
