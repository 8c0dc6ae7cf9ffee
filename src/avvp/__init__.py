"""avvp: weakly-supervised audio-visual video parsing in one library."""

__version__ = "0.1.0"
