"""Feature extraction from video files into the LLP layout (``avvp extract``).

The package is ``avvp.extraction``, not ``avvp.extract``, so that ``avvp.extract(...)`` can be the
Python API's function: a subpackage of that name would replace it on import.
"""
