"""``Result``: a value or an error, as the seed's API returns them (``Success`` / ``Failure``).

``deploy()`` returns one of these and never raises for a failed deployment::

    result = await strategy.deploy(service_name="api-service", new_version="v2.0.0")
    if result.is_success():
        print(result.value.deployment_duration)
    else:
        print(result.error)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, NoReturn, TypeVar

T = TypeVar("T")
E = TypeVar("E")


@dataclass(frozen=True)
class Success(Generic[T]):
    """A successful outcome carrying ``value``."""

    value: T

    def is_success(self) -> bool:
        return True

    def is_failure(self) -> bool:
        return False

    @property
    def error(self) -> NoReturn:
        raise AttributeError("a Success has no error; check is_success() first")

    def unwrap(self) -> T:
        return self.value


@dataclass(frozen=True)
class Failure(Generic[E]):
    """A failed outcome carrying ``error`` (usually a one-line message)."""

    error: E

    def is_success(self) -> bool:
        return False

    def is_failure(self) -> bool:
        return True

    @property
    def value(self) -> NoReturn:
        raise AttributeError(f"a Failure has no value (error: {self.error})")

    def unwrap(self) -> NoReturn:
        raise ValueError(f"unwrap() on a Failure: {self.error}")


Result = Success[T] | Failure[E]

__all__ = ["Failure", "Result", "Success"]
