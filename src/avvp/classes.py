"""The 25 LLP event classes in the order every public tool and pseudo-label file uses."""

from __future__ import annotations

from collections.abc import Iterable

CLASSES: tuple[str, ...] = (
    "Speech",
    "Car",
    "Cheering",
    "Dog",
    "Cat",
    "Frying_(food)",
    "Basketball_bounce",
    "Fire_alarm",
    "Chainsaw",
    "Cello",
    "Banjo",
    "Singing",
    "Chicken_rooster",
    "Violin_fiddle",
    "Vacuum_cleaner",
    "Baby_laughter",
    "Accordion",
    "Lawn_mower",
    "Motorcycle",
    "Helicopter",
    "Acoustic_guitar",
    "Telephone_bell_ringing",
    "Baby_cry_infant_cry",
    "Blender",
    "Clapping",
)
NUM_CLASSES = len(CLASSES)
NUM_SEGMENTS = 10
CLASS_INDEX: dict[str, int] = {name: i for i, name in enumerate(CLASSES)}


class UnknownClassError(ValueError):
    """A class name that is not one of the 25 LLP classes."""


def class_index(name: str, where: str = "") -> int:
    """Index of ``name`` in LLP order; ``where`` (file and row) goes into the error message."""
    try:
        return CLASS_INDEX[name]
    except KeyError:
        location = f"{where}: " if where else ""
        raise UnknownClassError(
            f"{location}unknown class name {name!r}; expected one of {', '.join(CLASSES)}"
        ) from None


def class_indices(names: Iterable[str], where: str = "") -> list[int]:
    return [class_index(name, where) for name in names]
