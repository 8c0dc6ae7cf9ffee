"""String options as enums whose parse error lists the allowed values."""

from __future__ import annotations

from enum import StrEnum
from typing import Self


class Choice(StrEnum):
    """A string option; ``parse`` turns a bad value into an error naming the allowed ones.

    Subclasses name the option they stand for in errors: ``class Gate(Choice, label="eval.gate")``.
    """

    def __init_subclass__(cls, *, label: str | None = None, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        cls._option = label or cls.__name__

    @classmethod
    def parse(cls, value: str | Self) -> Self:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(member.value for member in cls)
            raise ValueError(
                f"unknown {cls._option} {value!r}; expected one of {allowed}"
            ) from None
