"""Feature extraction from video files into the LLP layout (``avvp extract``)."""
