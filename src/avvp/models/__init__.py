"""Backbones registered by name; every model returns a ``ParseOutput``."""

from avvp import pooling  # noqa: F401  (registers the poolings models are built with)
from avvp.models import han, ppl  # noqa: F401
from avvp.models.base import AUDIO, VISUAL, ParseOutput

__all__ = ["AUDIO", "VISUAL", "ParseOutput"]
