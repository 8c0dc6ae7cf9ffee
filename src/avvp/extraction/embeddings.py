"""CLIP image and CLAP audio embeddings per segment: see avvp.extraction.base."""
