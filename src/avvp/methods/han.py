"""HAN's own training: attentive MIL on weak labels with visual label smoothing (SPEC section 4)."""

from avvp.methods.base import Method
from avvp.registry import register

register("method", "han")(Method)
