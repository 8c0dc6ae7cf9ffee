"""VGGish (audio, 1 x 128 a second): see avvp.extraction.base."""
