"""Training methods as plug-ins on the one trainer, created by name from the registry.

The registry imports the method modules (``avvp.registry.BUILTIN_MODULES``); this package does
not, so the trainer's modules can import ``avvp.methods.base`` while methods import them back.
"""

from avvp.methods.base import Batch, Method

__all__ = ["Batch", "Method"]
