"""avvp.evaluation.stats against slow obvious references, and the per-video scores of a run."""

import json
import math
import statistics

import numpy as np
import pytest

from avvp.evaluation.per_video import PER_VIDEO_FILE, read_per_video
from avvp.evaluation.stats import compare, excludes_zero, mean_std, paired_bootstrap, t_interval
from avvp.evaluation.summary import LEVELS, METRICS

# Student t quantile t_{0.975, 2} (3 seeds), from a printed table.
T_975_2 = 4.302652729911275


def test_mean_std_is_the_sample_standard_deviation():
    values = np.array([[53.1, 1.0], [54.0, 2.0], [52.2, 4.0]])
    mean, std = mean_std(values)
    for column in range(2):
        assert mean[column] == pytest.approx(statistics.mean(values[:, column]), abs=1e-12)
        assert std[column] == pytest.approx(statistics.stdev(values[:, column]), abs=1e-12)
    assert mean_std(np.array([[5.0]]))[1].tolist() == [0.0]


def test_t_interval_matches_the_textbook_formula():
    differences = np.array([[1.5, -0.2], [2.5, 0.4], [0.5, -0.5]])
    mean, low, high = t_interval(differences)
    for column in range(2):
        values = differences[:, column].tolist()
        half = T_975_2 * statistics.stdev(values) / math.sqrt(3)
        assert low[column] == pytest.approx(statistics.mean(values) - half, abs=1e-9)
        assert high[column] == pytest.approx(statistics.mean(values) + half, abs=1e-9)
    assert mean.tolist() == pytest.approx([1.5, -0.1])
    one = t_interval(np.array([[2.0]]))
    assert np.isnan(one[1]).all() and np.isnan(one[2]).all()


def test_paired_bootstrap_matches_a_loop_over_resamples():
    rng = np.random.default_rng(5)
    method, baseline = rng.random((2, 3, 40)) * 100
    difference, low, high = paired_bootstrap(method, baseline, resamples=300, seed=7)
    draws = np.random.default_rng(7).integers(0, 40, (300, 40))
    means = []
    for draw in draws:
        total = 0.0
        for video in draw:
            seeds = range(3)
            total += (
                sum(method[s, video] for s in seeds) / 3
                - sum(baseline[s, video] for s in seeds) / 3
            )
        means.append(total / 40)
    assert low == pytest.approx(np.percentile(means, 2.5), abs=1e-9)
    assert high == pytest.approx(np.percentile(means, 97.5), abs=1e-9)
    assert difference == pytest.approx(method.mean() - baseline.mean(), abs=1e-9)


def test_paired_bootstrap_is_vectorised_over_metrics_and_seeded():
    rng = np.random.default_rng(1)
    method, baseline = rng.random((2, 2, 30, 3))
    together = paired_bootstrap(method, baseline, resamples=200, seed=3)
    for metric in range(3):
        alone = paired_bootstrap(method[..., metric], baseline[..., metric], resamples=200, seed=3)
        for joint, single in zip(together, alone, strict=True):
            assert joint[metric] == pytest.approx(single, abs=1e-12)
    again = paired_bootstrap(method, baseline, resamples=200, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(together, again, strict=True))


def test_compare_marks_a_clear_gain_and_not_noise():
    rng = np.random.default_rng(0)
    baseline = rng.normal(50, 10, (3, 200))
    # Every video gains 5 points, give or take one: both intervals lie above 0.
    better = baseline + 5 + rng.normal(0, 1, (3, 200))
    clear = compare(better, baseline)
    assert bool(clear.significant) and clear.video_low > 0 and clear.seed_low > 0
    # Independent noise of mean 0 per video: not a real difference.
    noisy = compare(baseline + rng.normal(0, 10, (3, 200)), baseline)
    assert not bool(noisy.significant)
    assert excludes_zero(np.array([-2.0, 0.5, np.nan]), np.array([-1.0, 2.0, 1.0])).tolist() == [
        True,
        True,
        False,
    ]


def test_compare_refuses_unpaired_scores():
    with pytest.raises(ValueError, match="paired"):
        compare(np.zeros((3, 10)), np.zeros((2, 10)))


def test_a_run_saves_per_video_scores_whose_means_are_its_test_metrics(seeds_run):
    for seed in (1, 2):
        run = seeds_run / f"seed-{seed}"
        videos, scores = read_per_video(run / PER_VIDEO_FILE)
        metrics = json.loads((run / "test_metrics.json").read_text())
        assert len(set(videos)) == len(videos) > 0
        for level in LEVELS:
            for name in METRICS:
                per_video = scores[f"{level}.{name}"]
                assert per_video.shape == (len(videos),)
                assert per_video.mean() == pytest.approx(metrics[level][name], abs=1e-12)
