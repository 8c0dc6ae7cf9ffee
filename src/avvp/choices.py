"""String options as enums whose parse error lists the allowed values."""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class Choice(StrEnum):
    """A string option; ``parse`` turns a bad value into an error naming the allowed ones."""

    @classmethod
    def parse(cls, value: str | Self) -> Self:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(member.value for member in cls)
            raise ValueError(
                f"unknown {cls._label()} {value!r}; expected one of {allowed}"
            ) from None

    @classmethod
    def _label(cls) -> str:
        return cls.__name__
