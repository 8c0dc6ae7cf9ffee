"""Fixtures shared by the test files that build tiny synthetic datasets and train on them."""

import pytest

from avvp.cli import main

# Flags that train a run on the tiny dataset in seconds.
TINY_TRAINING = [
    "--no-progress",
    "optim.epochs=2",
    "optim.lr_step=2",
    "optim.batch_size=8",
    "model.d_model=32",
    "model.feedforward=32",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    assert main(["synth", "--out", str(root), "--videos", "80", "--seed", "0"]) == 0
    return root


@pytest.fixture(scope="module")
def seeds_run(dataset, tmp_path_factory):
    """A HAN run trained with ``--seeds 1,2`` for 2 epochs: ``RUN/seed-1``, ``RUN/seed-2``."""
    run = tmp_path_factory.mktemp("runs") / "han"
    flags = ["--data", str(dataset), "--out", str(run), "--seeds", "1,2", *TINY_TRAINING]
    assert main(["train", "--method", "han", *flags]) == 0
    return run
