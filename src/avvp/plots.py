"""Figures of a video's parse and of a training run, from plain arrays.

Every function returns a :class:`matplotlib.figure.Figure` on an Agg canvas built directly, not
through pyplot: no global figure registry to leak or close, no display needed, and the caller
decides whether to save (:func:`save_png`) or embed (:func:`png_bytes`) it.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import PatchCollection
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

STREAMS = ("audio", "visual")
DPI = 110
GT_COLOR = "#222222"
EMPTY_COLOR = "#d9d9d9"
PRED_COLOR = "#e8590c"
GATED_COLOR = "#7048e8"  # segments the video-level gate suppressed, and their video probability
PROB_CMAP = "Blues"
# Training curves: one marker per seed; the smallest y range, as a fraction of the largest value.
SEED_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
MIN_RELATIVE_SPAN = 0.1
# Vertical layout of one class on the timeline, in data units: GT track, prediction track, gap.
TRACK = 1.0
BAR = 0.8
CLASS_STEP = 2 * TRACK + 0.6
# Up to this many seconds the time axis has a tick every second.
MAX_SECOND_TICKS = 15


def display_name(name: str) -> str:
    """A class name as people write it ('Frying (food)', not 'Frying_(food)')."""
    return name.replace("_", " ")


def run_name(path: str | Path) -> str:
    """How figures name a run folder: its name, with its parent's for a ``seed-S`` folder.

    Never the whole path: a figure is shared or committed, and a path like
    ``/home/me/exp/han/seed-1`` says where it was made, not what it shows.
    """
    # abspath, not resolve: '.' and '..' get their names, a symlink keeps its own.
    path = Path(os.path.abspath(path))
    if re.fullmatch(r"seed-(-?\d+)", path.name):
        return f"{path.parent.name}/{path.name}"
    return path.name


def new_figure(width: float, height: float) -> Figure:
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def png_bytes(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    # The default Software entry carries matplotlib's web address; a report promises no URLs.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def save_png(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(figure))
    return path


# --- the parse of one video ---------------------------------------------------------------------


@dataclass(frozen=True)
class TimelinePanel:
    """One run's parse of one video; arrays are (2 streams audio, visual; T segments; C classes).

    ``video_prob`` (2, C), when given, is each class's video-level probability per stream,
    written beside its prediction track; with ``video_threshold`` (the gate's, when a gate
    applies) a probability below it is marked as gating the class off. ``suppressed`` (2, T, C)
    marks segments at or above the segment threshold that the gate turned off: without the mark
    a dark segment outside every predicted event looks like a bug. ``gt`` None: a video without
    labels (``avvp parse``), drawn with empty ground-truth tracks marked "no GT".
    """

    title: str
    gt: np.ndarray | None  # bool ground truth
    prob: np.ndarray  # segment probabilities in [0, 1]
    pred: np.ndarray  # bool binarized prediction
    video_prob: np.ndarray | None = None
    video_threshold: float | None = None
    suppressed: np.ndarray | None = None

    def __post_init__(self) -> None:
        names = ["gt"] if self.gt is not None else []
        names += ["prob", "pred"] + (["suppressed"] if self.suppressed is not None else [])
        shapes = {name: np.shape(getattr(self, name)) for name in names}
        if len(set(shapes.values())) != 1 or len(shapes["prob"]) != 3 or shapes["prob"][0] != 2:
            raise ValueError(
                f"panel {self.title!r}: {', '.join(names)} must be (2, T, C), {shapes}"
            )
        expected = (2, shapes["prob"][2])
        if self.video_prob is not None and np.shape(self.video_prob) != expected:
            raise ValueError(
                f"panel {self.title!r}: video_prob must be (2, C) = {expected}, found "
                f"{np.shape(self.video_prob)}"
            )


def timeline_classes(panels: Sequence[TimelinePanel]) -> list[int]:
    """Classes a timeline shows: in any panel's ground truth first, then those only predicted.

    Ground-truth classes on top let a reader take in the true events before the false alarms.
    """
    in_gt = np.any(
        [panel.gt.any(axis=(0, 1)) for panel in panels if panel.gt is not None]
        or [np.zeros(panels[0].prob.shape[2], dtype=bool)],
        axis=0,
    )
    predicted = np.any([panel.pred.any(axis=(0, 1)) for panel in panels], axis=0)
    return [*np.flatnonzero(in_gt).tolist(), *np.flatnonzero(predicted & ~in_gt).tolist()]


def timeline_figure(
    panels: Sequence[TimelinePanel],
    class_names: Sequence[str],
    title: str = "",
    threshold: float | None = None,
) -> Figure:
    """The parse of one video as AVVP papers draw it, one panel per run, stacked.

    Each panel has an audio and a visual column over the T one-second segments, one row per class
    of :func:`timeline_classes`; per class a ground-truth track (filled where the event is on)
    above a prediction track (shaded by the segment probability, the binarized events outlined).
    ``threshold``, the segment threshold the panels share if they do, is marked on the colour bar:
    shades just either side of it look alike, and the mark tells which side a shade is on.
    """
    if not panels:
        raise ValueError("no panels to draw")
    segments, classes = panels[0].prob.shape[1:]
    if any(panel.prob.shape != (2, segments, classes) for panel in panels):
        raise ValueError("all panels must show the same number of segments and classes")
    if len(class_names) != classes:
        raise ValueError(f"{len(class_names)} class names for {classes} classes")
    shown = timeline_classes(panels)
    rows = max(len(shown), 1)
    panel_height = 0.72 * rows + 0.9  # inches: class rows, then column titles and time axis
    figure = new_figure(11.0, panel_height * len(panels) + 1.4)
    # Room between the audio and visual columns, or the "10" of one x axis runs into the "0" of
    # the other.
    figure.get_layout_engine().set(wspace=0.08)
    heights = [panel_height] * len(panels) + [1.0]
    subfigures = figure.subfigures(len(panels) + 1, 1, height_ratios=heights, hspace=0.04)
    norm = Normalize(0.0, 1.0)
    mappable = None
    for subfigure, panel in zip(subfigures, panels, strict=False):
        subfigure.suptitle(panel.title, fontsize=10, fontweight="bold", ha="left", x=0.01)
        axes = subfigure.subplots(1, 2, sharey=True)
        for stream, ax in enumerate(axes):
            mappable = _draw_tracks(ax, panel, stream, shown, norm)
            _style_timeline_axes(ax, stream, shown, class_names, segments, panel.gt is not None)
    gates = {panel.video_threshold for panel in panels if panel.video_prob is not None}
    has_gt = any(panel.gt is not None for panel in panels)
    _timeline_legend(subfigures[-1], mappable, threshold, gates, has_gt)
    if title:
        figure.suptitle(title, fontsize=12)
    return figure


def _draw_tracks(ax, panel: TimelinePanel, stream: int, shown: list[int], norm: Normalize):
    """Draw one stream of one panel; returns the probability shading (for the colour bar)."""
    gt_boxes, gt_colors, prob_boxes, probs = [], [], [], []
    for row, klass in enumerate(shown):
        top = row * CLASS_STEP
        for t in range(panel.prob.shape[1]):
            if panel.gt is not None:
                gt_boxes.append(Rectangle((t, top), 1, BAR))
                gt_colors.append(GT_COLOR if panel.gt[stream, t, klass] else EMPTY_COLOR)
            prob_boxes.append(Rectangle((t, top + TRACK), 1, BAR))
            probs.append(panel.prob[stream, t, klass])
        # Outline whole predicted events, not segments, so each event reads as one interval.
        for onset, offset in _events(panel.pred[stream, :, klass]):
            ax.add_patch(
                Rectangle(
                    (onset, top + TRACK),
                    offset - onset,
                    BAR,
                    fill=False,
                    edgecolor=PRED_COLOR,
                    linewidth=2.2,
                    zorder=3,
                )
            )
        if panel.suppressed is not None:
            for onset, offset in _events(panel.suppressed[stream, :, klass]):
                ax.add_patch(_gated_patch((onset, top + TRACK), offset - onset))
        if panel.video_prob is not None:
            _video_prob_label(ax, panel, stream, klass, top + TRACK + BAR / 2)
    ax.add_collection(
        PatchCollection(gt_boxes, facecolors=gt_colors, edgecolors="white", linewidths=0.8)
    )
    shading = PatchCollection(
        prob_boxes, cmap=PROB_CMAP, norm=norm, edgecolors="#bbbbbb", linewidths=0.5
    )
    shading.set_array(np.asarray(probs, dtype=float))
    ax.add_collection(shading)
    return shading


def _gated_patch(corner: tuple[float, float], width: float) -> Rectangle:
    """Hatching over segments above the threshold that the video-level gate turned off."""
    return Rectangle(
        corner,
        width,
        BAR,
        fill=False,
        hatch="///",
        edgecolor=GATED_COLOR,
        linestyle="--",
        linewidth=1.4,
        zorder=3,
    )


def _video_prob_label(ax, panel: TimelinePanel, stream: int, klass: int, y: float) -> None:
    """The class's video-level probability right of its prediction track, coloured when the
    gate turns the class off in this stream."""
    value = float(panel.video_prob[stream, klass])
    gated = panel.video_threshold is not None and value < panel.video_threshold
    ax.text(
        1.01,
        y,
        f"{value:.2f}",
        transform=ax.get_yaxis_transform(),
        va="center",
        ha="left",
        fontsize=8,
        color=GATED_COLOR if gated else "#333333",
        fontweight="bold" if gated else "normal",
    )


def _events(track: np.ndarray) -> list[tuple[int, int]]:
    """Maximal runs of ones of a (T,) bool array as half-open (onset, offset) pairs."""
    padded = np.concatenate([[False], track.astype(bool), [False]])
    flips = np.flatnonzero(padded[1:] != padded[:-1])
    return list(zip(flips[0::2].tolist(), flips[1::2].tolist(), strict=True))


def _style_timeline_axes(
    ax,
    stream: int,
    shown: list[int],
    class_names: Sequence[str],
    segments: int,
    has_gt: bool = True,
) -> None:
    rows = max(len(shown), 1)
    ax.set_xlim(0, segments)
    ax.set_ylim(rows * CLASS_STEP - (CLASS_STEP - TRACK - BAR), -0.3)
    ax.set_title(STREAMS[stream], fontsize=10)
    if segments <= MAX_SECOND_TICKS:
        ax.set_xticks(range(segments + 1))
    else:  # a tick every second would run the labels of a long video into each other
        ax.xaxis.set_major_locator(MaxNLocator(nbins=MAX_SECOND_TICKS, integer=True))
    ax.set_xlabel("time (s)")
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    # Class names are the major ticks, the track names minor ticks; the padding pushes the class
    # names out past the track names so that the two never overlap.
    ax.set_yticks([row * CLASS_STEP + TRACK - (TRACK - BAR) / 2 for row in range(len(shown))])
    ax.set_yticks(
        [row * CLASS_STEP + offset + BAR / 2 for row in range(len(shown)) for offset in (0, TRACK)],
        minor=True,
    )
    tracks = ["GT" if has_gt else "no GT", "pred"]
    ax.set_yticklabels(tracks * len(shown), minor=True, fontsize=7, color="#555555")
    ax.tick_params(axis="y", which="both", length=0)
    if stream == 0:
        ax.set_yticklabels([display_name(class_names[k]) for k in shown], fontsize=9)
        ax.tick_params(axis="y", which="major", pad=26)
    else:
        ax.tick_params(axis="y", which="major", labelleft=False)
    if not shown:
        ax.text(segments / 2, 0.5, "no event in the ground truth or the prediction", ha="center")


def _timeline_legend(
    subfigure,
    mappable,
    threshold: float | None,
    gates: Collection[float | None],
    has_gt: bool = True,
) -> None:
    legend_ax, colorbar_ax = subfigure.subplots(1, 2, width_ratios=[1.2, 1])
    legend_ax.axis("off")
    if has_gt:
        handles = [
            Patch(facecolor=GT_COLOR, label="GT: event on (ground truth)"),
            Patch(facecolor=EMPTY_COLOR, label="GT: event off"),
        ]
    else:
        handles = [
            Patch(facecolor="white", edgecolor="#bbbbbb", label="no GT: a video without labels")
        ]
    handles += [
        Patch(
            facecolor="white",
            edgecolor=PRED_COLOR,
            linewidth=2.2,
            label="pred: predicted event (after the threshold and gate in the title)",
        ),
    ]
    gate_values = sorted(gate for gate in gates if gate is not None)
    if gate_values:
        below = " / ".join(f"{gate:g}" for gate in gate_values)
        handles.append(
            Patch(
                facecolor="white",
                edgecolor=GATED_COLOR,
                hatch="///",
                linestyle="--",
                label="pred: above the threshold, but the gate is off "
                f"(video probability < {below})",
            )
        )
    if gates:
        handles.append(
            Patch(
                facecolor="white",
                edgecolor="white",
                label="number right of a pred track: the class's video-level probability "
                + ("(bold, purple: it gates the class off)" if gate_values else "(no gate)"),
            )
        )
    legend_ax.legend(
        handles=handles,
        loc="center left",
        frameon=False,
        fontsize=9,
    )
    colorbar = subfigure.colorbar(mappable, cax=colorbar_ax, orientation="horizontal")
    label = "pred shading: segment probability"
    if threshold is not None:
        colorbar.ax.axvline(threshold, color=PRED_COLOR, linewidth=2.5)
        label += f"\n(orange mark: the threshold, {threshold:g})"
    colorbar.set_label(label, fontsize=9)
    colorbar_ax.xaxis.set_label_position("top")
    colorbar_ax.set_box_aspect(0.06)


# --- per-class F1 -------------------------------------------------------------------------------


def class_f1_figure(
    f1: Mapping[str, np.ndarray], class_names: Sequence[str], title: str = ""
) -> Figure:
    """Horizontal bars of per-class F1 (%), one panel per stream.

    ``f1`` maps a stream name to an (S, C) array, one row per seed (S = 1 for a single run); NaN
    marks a class neither present nor predicted. Bars show the mean over seeds, whiskers the
    standard deviation when S > 1.
    """
    streams = list(f1)
    classes = len(class_names)
    figure = new_figure(4.2 * len(streams) + 1.6, 0.24 * classes + 1.3)
    axes = figure.subplots(1, len(streams), sharey=True, squeeze=False)[0]
    rows = np.arange(classes)
    for ax, stream in zip(axes, streams, strict=True):
        values = np.atleast_2d(np.asarray(f1[stream], dtype=float))
        if values.shape[1] != classes:
            raise ValueError(f"{stream}: {values.shape[1]} values for {classes} classes")
        mean, spread, counted = _seed_mean_std(values)
        ax.barh(rows, mean, xerr=spread, color="#4c72b0", height=0.7, capsize=2)
        label_at = mean + (0 if spread is None else spread) + 1.5
        for row in rows:
            if counted[row]:
                ax.text(label_at[row], row, f"{mean[row]:.1f}", va="center", fontsize=7)
            else:
                ax.text(1.5, row, "n/a", va="center", fontsize=7, color="#999999")
        ax.set_xlim(0, 110)
        ax.set_xticks(range(0, 101, 20))
        ax.set_xlabel("F1 (%)")
        ax.set_title(stream, fontsize=10)
        ax.grid(axis="x", color="#eeeeee")
        ax.set_axisbelow(True)
    axes[0].set_yticks(rows, [display_name(name) for name in class_names], fontsize=8)
    axes[0].invert_yaxis()
    figure.supxlabel("n/a: class neither in the ground truth nor predicted", fontsize=8)
    if title:
        figure.suptitle(title, fontsize=11)
    return figure


def _seed_mean_std(values: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """(mean, sample std or None for one seed, counted) per column of (S, C), NaNs left out.

    A class is NaN in the seeds that neither saw nor predicted it; the std over fewer than two
    values is 0 (one seed says nothing about spread), where numpy would warn and give NaN.
    """
    finite = ~np.isnan(values)
    count = finite.sum(axis=0)
    counted = count > 0
    mean = np.divide(
        np.where(finite, values, 0.0).sum(axis=0), count, out=np.zeros(count.shape), where=counted
    )
    if len(values) == 1:
        return mean, None, counted
    squares = (np.where(finite, values - mean, 0.0) ** 2).sum(axis=0)
    spread = np.sqrt(np.divide(squares, count - 1, out=np.zeros(count.shape), where=count > 1))
    return mean, spread, counted


# --- training curves ----------------------------------------------------------------------------


def curves_figure(
    histories: Sequence[Mapping[str, np.ndarray]],
    groups: Mapping[str, Sequence[str]],
    *,
    ylabels: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    dashed: Collection[str] = (),
    best_epochs: Sequence[int | None] = (),
    title: str = "",
    columns_per_row: int = 3,
    seed_names: Sequence[str] = (),
    integer: Collection[str] = (),
    min_spans: Mapping[str, float] | None = None,
) -> Figure:
    """Per-epoch curves, one subplot per group of columns, one line per column and seed.

    ``histories`` are per-seed ``column -> (epochs,)`` arrays with an ``epoch`` column; ``groups``
    maps a subplot title to the columns it draws (a column missing from a history is skipped);
    ``ylabels`` gives a subplot's y-axis label (with its unit); ``labels`` names columns in
    legends (default: the last dotted part, 'total' for 'loss.total'); ``dashed`` columns are
    drawn dashed, so that a total equal to its only component does not hide it. ``best_epochs``
    (one per seed) are drawn as dotted vertical lines: where the evaluated checkpoint came from.

    Seeds (named by ``seed_names``) differ by marker, and by colour too where every subplot
    draws one column; a legend above the subplots says which is which. All subplots share one
    epoch axis, so a column that starts later (logged after a warm-up) lines up with the others.
    Subplots in ``integer`` get integer y ticks (counts, epochs). A subplot's y range is at
    least ``min_spans[name]`` and :data:`MIN_RELATIVE_SPAN` of its largest magnitude: autoscaling
    would stretch a change in the third digit across the whole height.
    """
    if not groups:
        raise ValueError("no curves to draw")
    ylabels = ylabels or {}
    labels = labels or {}
    min_spans = min_spans or {}
    several = len(histories) > 1
    colour_by_seed = several and all(len(columns) == 1 for columns in groups.values())
    names = list(seed_names) or [f"seed {index + 1}" for index in range(len(histories))]
    grid_rows = math.ceil(len(groups) / columns_per_row)
    # As many subplots in every row as the rows allow, instead of a full top row and a stub.
    cols = math.ceil(len(groups) / grid_rows)
    legend_rows = max(math.ceil(len(columns) / 3) for columns in groups.values())
    legend_rows = legend_rows if any(len(columns) > 1 for columns in groups.values()) else 0
    figure = new_figure(4.3 * cols, (3.0 + 0.18 * legend_rows) * grid_rows + 0.6)
    axes = figure.subplots(grid_rows, cols, squeeze=False).ravel()
    epochs = np.concatenate([np.asarray(history["epoch"], dtype=float) for history in histories])
    for ax, (name, columns) in zip(axes, groups.items(), strict=False):
        for index, column in enumerate(columns):
            for seed, history in enumerate(histories):
                if column not in history:
                    continue
                ax.plot(
                    history["epoch"],
                    history[column],
                    **_seed_style(seed, several, colour_by_seed, index),
                    linewidth=1.3,
                    linestyle="--" if column in dashed else "-",
                    label=labels.get(column, column.rsplit(".", 1)[-1]) if seed == 0 else None,
                )
        _floor_y_range(ax, min_spans.get(name, 0.0))  # from the curves alone, before the marks
        for best in best_epochs:
            if best is not None:
                ax.axvline(best, color="#888888", linestyle=":", linewidth=1)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabels.get(name, ""))
        _shared_epoch_axis(ax, epochs)
        # A fixed number of ticks: with nbins="auto" the ticks follow the axes' height,
        # which the constrained layout changes after it has measured the tick labels, and a
        # wider label then runs off the figure's edge.
        ax.yaxis.set_major_locator(MaxNLocator(nbins=6, integer=name in integer))
        ax.grid(color="#eeeeee")
        if len(columns) > 1:
            # Below the axes: inside, a legend hides whichever curve runs under it.
            ax.legend(
                fontsize=7,
                frameon=False,
                loc="upper center",
                bbox_to_anchor=(0.5, -0.2),
                ncols=min(3, len(columns)),
            )
    for ax in axes[len(groups) :]:
        ax.axis("off")
    notes = []
    if any(best is not None for best in best_epochs):
        notes.append("dotted line: epoch of the best checkpoint")
    if title or notes:
        figure.suptitle("; ".join(filter(None, [title, *notes])), fontsize=11)
    if several:
        handles = [
            Line2D([], [], label=name, **_seed_style(seed, several, colour_by_seed, None))
            for seed, name in enumerate(names)
        ]
        figure.legend(
            handles=handles,
            loc="outside lower center",
            ncols=min(len(handles), 6),
            frameon=False,
            fontsize=9,
        )
    return figure


def _seed_style(seed: int, several: bool, colour_by_seed: bool, column: int | None) -> dict:
    """Marker (hollow, so that equal curves of two seeds both show) and colour of a seed's line.

    ``column`` is the line's column within its subplot; None for the seed legend, whose lines
    are grey where the colour tells columns apart.
    """
    if colour_by_seed:
        colour = f"C{seed % 10}"
    else:
        colour = "#555555" if column is None else f"C{column % 10}"
    return {
        "color": colour,
        "marker": SEED_MARKERS[seed % len(SEED_MARKERS)],
        "markersize": 4.5 if several else 3.5,
        "fillstyle": "none" if several else "full",
    }


def has_values(histories: Sequence[Mapping[str, np.ndarray]], column: str) -> bool:
    """Whether any history logs ``column`` with a value other than 0 (blank cells are NaN)."""
    values = [np.asarray(h[column], dtype=float) for h in histories if column in h]
    return any(np.nan_to_num(array, nan=0.0).any() for array in values)


def _shared_epoch_axis(ax, epochs: np.ndarray) -> None:
    first, last = float(np.min(epochs)), float(np.max(epochs))
    pad = max(0.04 * (last - first), 0.3)
    ax.set_xlim(first - pad, last + pad)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _floor_y_range(ax, min_span: float) -> None:
    """Widen the y range to at least ``min_span`` and MIN_RELATIVE_SPAN of the largest value."""
    if not ax.lines:
        return
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.lines])
    values = values[np.isfinite(values)]
    if not values.size:
        return
    low, high = float(values.min()), float(values.max())
    span = max(min_span, MIN_RELATIVE_SPAN * max(abs(low), abs(high)))
    if high - low >= span:
        return
    middle = (low + high) / 2
    bottom = middle - span / 2
    if low >= 0 > bottom:  # a non-negative quantity keeps a non-negative axis
        bottom = 0.0
    ax.set_ylim(bottom, bottom + span)
