"""``data.train_videos``: a fixed random subset of the train split, hidden labels kept aligned."""

import numpy as np
import pytest

from avvp.config import resolve_config
from avvp.data.synthetic import load_hidden_train_labels as load_all_hidden
from avvp.training.data import load_hidden_train_labels, load_splits


def config_for(dataset, *overrides):
    return resolve_config("han", None, [f"data.root={dataset}", "data.cache=false", *overrides])


def test_subset_takes_the_same_videos_for_every_run_seed(dataset):
    full = load_splits(config_for(dataset), ("train",), progress=False)["train"]
    first = load_splits(config_for(dataset, "data.train_videos=20", "seed=1"), ("train",), False)
    second = load_splits(config_for(dataset, "data.train_videos=20", "seed=7"), ("train",), False)
    subset = first["train"]
    assert len(subset) == 20
    assert subset.filenames == second["train"].filenames
    assert list(subset.filenames) == sorted(subset.filenames, key=full.filenames.index)
    rows = [full.filenames.index(name) for name in subset.filenames]
    np.testing.assert_array_equal(subset.weak, full.weak[rows])
    for name, array in subset.features.items():
        np.testing.assert_array_equal(array, full.features[name][rows])


def test_another_subset_seed_takes_other_videos(dataset):
    names = [
        load_splits(config_for(dataset, "data.train_videos=20", f"data.train_subset_seed={s}"),
                    ("train",), False)["train"].filenames
        for s in (0, 1)
    ]  # fmt: skip
    assert names[0] != names[1]


def test_hidden_labels_follow_the_subset(dataset):
    config = config_for(dataset, "data.train_videos=15")
    full = load_splits(config_for(dataset), ("train",), progress=False)["train"]
    subset = load_splits(config, ("train",), progress=False)["train"]
    rows = [full.filenames.index(name) for name in subset.filenames]
    everything = load_all_hidden(dataset)
    hidden = load_hidden_train_labels(config)
    np.testing.assert_array_equal(hidden.audio, everything.audio[rows])
    np.testing.assert_array_equal(hidden.visual, everything.visual[rows])


@pytest.mark.parametrize("size", [0, 10_000])
def test_impossible_subset_size_is_an_error(dataset, size):
    with pytest.raises(ValueError, match="train split has"):
        load_splits(config_for(dataset, f"data.train_videos={size}"), ("train",), False)
