"""The exact AVVP evaluation protocol (SPEC section 3) and the prediction file format."""

from avvp.evaluation.io import read_predictions, write_predictions
from avvp.evaluation.metrics import (
    SCORES,
    Evaluation,
    Gate,
    IoUMode,
    as_binary,
    binarize,
    evaluate,
    evaluate_detailed,
    format_table,
    runs,
)

__all__ = [
    "SCORES",
    "Evaluation",
    "Gate",
    "IoUMode",
    "as_binary",
    "binarize",
    "evaluate",
    "evaluate_detailed",
    "format_table",
    "read_predictions",
    "runs",
    "write_predictions",
]
