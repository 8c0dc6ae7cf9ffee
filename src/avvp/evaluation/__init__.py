"""The exact AVVP evaluation protocol (SPEC section 3)."""
