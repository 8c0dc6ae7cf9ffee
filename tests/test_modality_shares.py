"""benchmarks/modality_shares.py: audible-only, visible-only and both, against loops."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from avvp.classes import CLASSES, NUM_CLASSES, NUM_SEGMENTS
from avvp.data.annotations import LLPAnnotations
from avvp.data.synthetic import load_hidden_train_labels

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import modality_shares


def naive_counts(weak, audio, visual) -> dict[str, list[int]]:
    counts = {kind: [0] * NUM_CLASSES for kind in (*modality_shares.KINDS, "outside")}
    for v in range(len(weak)):
        for c in range(NUM_CLASSES):
            audible = any(audio[v, t, c] for t in range(NUM_SEGMENTS))
            visible = any(visual[v, t, c] for t in range(NUM_SEGMENTS))
            if not weak[v, c]:
                counts["outside"][c] += int(audible or visible)
            elif audible and visible:
                counts["both"][c] += 1
            elif audible:
                counts["audio_only"][c] += 1
            elif visible:
                counts["visual_only"][c] += 1
            else:
                counts["neither"][c] += 1
    return counts


def test_pair_counts_match_a_loop():
    rng = np.random.default_rng(0)
    weak = rng.random((30, NUM_CLASSES)) < 0.3
    audio = rng.random((30, NUM_SEGMENTS, NUM_CLASSES)) < 0.05
    visual = rng.random((30, NUM_SEGMENTS, NUM_CLASSES)) < 0.05
    counts = modality_shares.pair_counts(weak.astype(np.uint8), audio, visual)
    expected = naive_counts(weak, audio, visual)
    for kind, values in expected.items():
        assert counts[kind].tolist() == values, kind
    assert all(expected[kind] for kind in expected)  # every kind occurs in this draw


def test_the_script_writes_every_row(dataset, tmp_path, capsys):
    out = tmp_path / "shares"
    argv = ["--annotations", str(dataset), "--data", str(dataset), "--out", str(out)]
    assert modality_shares.main(argv) == 0
    rows = {row["source"]: row for row in json.loads(out.with_suffix(".json").read_text())["rows"]}
    train = rows["builtin per_class synthetic (80 videos) train (hidden)"]
    hidden = load_hidden_train_labels(dataset)
    weak = LLPAnnotations(dataset).weak("train").labels
    expected = naive_counts(weak, hidden.audio, hidden.visual)
    pairs = int(weak.sum())
    assert train["videos"] == len(weak) and train["weak_pairs"] == pairs
    for kind in modality_shares.KINDS:
        assert train["counts"][kind] == sum(expected[kind])
        assert train["shares"][kind] == pytest.approx(100 * sum(expected[kind]) / pairs)
        assert train["per_class"][CLASSES[0]][kind] == expected[kind][0]
    assert sum(train["shares"].values()) == pytest.approx(100)
    val = LLPAnnotations(dataset).dense("val")
    real_val = rows["real LLP (2024 audio GT) val"]
    expected_val = naive_counts(LLPAnnotations(dataset).weak("val").labels, val.audio, val.visual)
    assert real_val["counts"]["both"] == sum(expected_val["both"])
    table = out.with_suffix(".md").read_text()
    assert "| builtin per_class synthetic (80 videos) train (hidden) | 56 |" in table
    assert "| Speech |" in table
    assert "| source | videos |" in capsys.readouterr().out
