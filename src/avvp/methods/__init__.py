"""Training methods as plug-ins on the one trainer, created by name from the registry."""

from avvp.methods import han, poibin  # noqa: F401  (registration happens at import)
from avvp.methods.base import Batch, Method

__all__ = ["Batch", "Method"]
