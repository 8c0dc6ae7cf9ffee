"""Feature extraction from video files into the LLP layout (``avvp extract``).

The package is ``avvp.extraction``, not ``avvp.extract``, so that ``avvp.extract(...)`` can be the
Python API's function: a subpackage of that name would replace it on import.

:func:`extract` writes the feature files of many videos into a folder (resumable, one video's
failure recorded without stopping the others); :func:`extract_video` returns one video's
features in memory (what ``avvp parse`` uses).
"""

from avvp.extraction.pipeline import ExtractionSummary, extract, extract_video

__all__ = ["ExtractionSummary", "extract", "extract_video"]
