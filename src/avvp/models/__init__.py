"""Backbones registered by name; every model returns a ``ParseOutput``."""
