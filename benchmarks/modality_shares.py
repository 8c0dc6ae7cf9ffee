"""How many weakly labelled events are audible only, visible only or both: real LLP and synthetic.

    python benchmarks/modality_shares.py --annotations ../shared/llp/annotations \
        --data SYNTH_DIR [--data SYNTH_DIR ...] [--out benchmarks/results/modality_shares]

Each weakly labelled (video, class) pair is audio only (its class is in some audio segment and no
visual one), visual only, both, or neither (the weak label names a class that no segment of either
stream holds: an annotation gap). Counted on the real dense val/test annotations of
``--annotations`` (AVVP_eval_audio.csv and AVVP_eval_visual.csv, the 2024 audio ground truth and
the pre-2024 one) and, for each synthetic dataset of ``--data``, on its hidden train labels
(``avvp.data.synthetic.load_hidden_train_labels``) and its val/test ground truth. Annotated
pairs outside the weak labels are counted apart. Prints the tables and writes
``OUT.{md,json}``: the shares over all pairs, and per class for the real val+test and each
synthetic train split.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from results_file import write_results

from avvp.classes import CLASSES, NUM_CLASSES
from avvp.data.annotations import AudioGroundTruth, LLPAnnotations
from avvp.data.synthetic import load_hidden_train_labels, read_manifest, with_label_model

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = ("audio_only", "visual_only", "both", "neither")
HEADERS = ("audio only %", "visual only %", "both %", "neither %")


def pair_counts(weak: np.ndarray, audio: np.ndarray, visual: np.ndarray) -> dict[str, np.ndarray]:
    """Per class (C,), the weakly labelled pairs of each kind of :data:`KINDS`, and ``outside``:
    the pairs that some segment holds but the weak labels do not name.

    ``weak`` (V, C) 0/1, ``audio`` / ``visual`` (V, T, C) bool segment labels.
    """
    weak = np.asarray(weak).astype(bool)
    audible, visible = np.asarray(audio).any(axis=1), np.asarray(visual).any(axis=1)
    kinds = {
        "audio_only": audible & ~visible,
        "visual_only": visible & ~audible,
        "both": audible & visible,
        "neither": ~audible & ~visible,
    }
    counts = {kind: (weak & kinds[kind]).sum(axis=0) for kind in KINDS}
    counts["outside"] = ((audible | visible) & ~weak).sum(axis=0)
    return counts


def row(source: str, weak: np.ndarray, audio: np.ndarray, visual: np.ndarray) -> dict:
    """One line of the main table: the shares over all classes' pairs, and the share of videos
    with no visible (no audible) event at all."""
    counts = pair_counts(weak, audio, visual)
    videos = len(weak)
    totals = {kind: int(counts[kind].sum()) for kind in (*KINDS, "outside")}
    pairs = sum(totals[kind] for kind in KINDS)
    shares = {kind: 100 * totals[kind] / max(pairs, 1) for kind in KINDS}
    per_class = {
        CLASSES[c]: {kind: int(counts[kind][c]) for kind in (*KINDS, "outside")}
        for c in range(NUM_CLASSES)
    }
    return {
        "source": source,
        "videos": videos,
        "weak_pairs": pairs,
        "counts": totals,
        "shares": shares,
        "no_visible_event": 100 * float((~np.asarray(visual).any(axis=(1, 2))).mean()),
        "no_audible_event": 100 * float((~np.asarray(audio).any(axis=(1, 2))).mean()),
        "per_class": per_class,
    }


def real_rows(folder: Path) -> list[dict]:
    """Real val, test and val+test (2024 audio ground truth), and val+test with pre-2024's."""
    rows = []
    for audio_gt in AudioGroundTruth:
        annotations = LLPAnnotations(folder, audio_gt, warn=False)
        splits = {}
        for split in ("val", "test"):
            dense = annotations.dense(split)
            splits[split] = (annotations.weak(split).labels, dense.audio, dense.visual)
        both = [np.concatenate(arrays) for arrays in zip(*splits.values(), strict=True)]
        label = f"real LLP ({audio_gt.value} audio GT)"
        if audio_gt is AudioGroundTruth.V2024:
            rows += [row(f"{label} {split}", *splits[split]) for split in ("val", "test")]
        rows.append(row(f"{label} val+test", *both))
    return rows


def synthetic_rows(root: Path) -> list[dict]:
    """A synthetic dataset's hidden train labels, then its val and test ground truth."""
    manifest = read_manifest(root)
    hidden = load_hidden_train_labels(root)
    if manifest is None or hidden is None:
        raise SystemExit(f"{root} is not a synthetic dataset (`avvp synth` makes one)")
    settings = with_label_model(manifest["settings"])
    mode = settings["mode"]
    if "label_model" in settings:
        mode += f" {settings['label_model']}"
    name = f"{mode} synthetic ({sum(manifest['videos'].values())} videos)"
    annotations = LLPAnnotations(root, warn=False)
    weak = annotations.weak("train").labels
    rows = [row(f"{name} train (hidden)", weak, hidden.audio, hidden.visual)]
    for split in ("val", "test"):
        dense = annotations.dense(split)
        rows.append(
            row(f"{name} {split}", annotations.weak(split).labels, dense.audio, dense.visual)
        )
    return rows


def synthetic_sources(roots: Sequence[Path]) -> list[str]:
    """How each synthetic dataset was made, from its manifest."""
    sources = []
    for root in roots:
        settings = with_label_model(read_manifest(root)["settings"])
        made = f"--videos {settings['videos']} --seed {settings['seed']}"
        if "label_model" in settings:
            made += f" --label-model {settings['label_model']}"
        if settings["annotations"] is not None:
            made = f"--annotations {settings['annotations']} {made}"
        sources.append(f"{root.name}: `avvp synth {made}`")
    return sources


def format_tables(rows: list[dict], per_class_sources: Sequence[str]) -> str:
    lines = [
        "| source | videos | weak pairs | "
        + " | ".join(HEADERS)
        + " | annotated, not weak | videos with no visible event % | no audible event % |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in HEADERS) + " | ---: | ---: | ---: |",
    ]
    for item in rows:
        shares = " | ".join(f"{item['shares'][kind]:.1f}" for kind in KINDS)
        lines.append(
            f"| {item['source']} | {item['videos']} | {item['weak_pairs']} | {shares} | "
            f"{item['counts']['outside']} | {item['no_visible_event']:.1f} | "
            f"{item['no_audible_event']:.1f} |"
        )
    by_source = {item["source"]: item for item in rows}
    chosen = [by_source[source] for source in per_class_sources]
    lines += [
        "",
        "Per class: weak pairs, and audio only / visual only / both in % of them.",
        "",
        "| class | " + " | ".join(item["source"] for item in chosen) + " |",
        "| --- | " + " | ".join("---" for _ in chosen) + " |",
    ]
    for name in CLASSES:
        cells = []
        for item in chosen:
            counts = item["per_class"][name]
            pairs = sum(counts[kind] for kind in KINDS)
            shares = "/".join(
                f"{100 * counts[kind] / pairs:.0f}" if pairs else "-"
                for kind in ("audio_only", "visual_only", "both")
            )
            cells.append(f"{pairs}: {shares}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--annotations", type=Path, default=None, help="real LLP annotation folder")
    parser.add_argument(
        "--data", type=Path, action="append", default=[], help="a synthetic dataset (repeatable)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "modality_shares")
    args = parser.parse_args(argv)
    if args.annotations is None and not args.data:
        parser.error("give --annotations and/or --data")
    rows = [] if args.annotations is None else real_rows(args.annotations)
    for root in args.data:
        rows += synthetic_rows(root)
    per_class = [item["source"] for item in rows if "val+test" in item["source"]][:1]
    per_class += [item["source"] for item in rows if item["source"].endswith("train (hidden)")]
    table = format_tables(rows, per_class)
    note = (
        "A weakly labelled (video, class) pair is *audio only* if some audio segment holds the "
        "class and no visual one, *visual only* the other way round, *both*, or *neither* (the "
        "weak label names a class no segment of either stream holds: an annotation gap). Shares "
        "are of the weak pairs; 'annotated, not weak' counts the pairs some segment holds that "
        "the weak labels do not name (not in the shares). The last two columns: the videos "
        "where no segment of the visual (audio) stream holds any class. Real rows: the dense "
        "val/test "
        "annotations; synthetic train rows: the hidden segment labels the generator drew, "
        "never seen by training. Synthetic sets as `avvp synth` made them: "
        + "; ".join(synthetic_sources(args.data))
        + f". Arguments: `{' '.join(sys.argv[1:] if argv is None else argv)}`."
    )
    print(table)
    write_results(
        args.out, "Modality shares of weakly labelled events", table, note, {"rows": rows}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
