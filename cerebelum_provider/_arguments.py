"""Argument checks shared by the trigger, the sensor and the operators; pure Python, no imports of cost.

Every check raises a ``TypeError``/``ValueError`` that names the argument and what was expected,
before anything is sent to Core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Literal, overload

from cerebelum_provider.models import ExecutionState


def coerce_states(
    states: Iterable[ExecutionState | str] | ExecutionState | str, field_name: str
) -> tuple[str, ...]:
    """Turn states given as enums, names or values into a tuple of wire names (``EXECUTION_...``).

    Raises:
        TypeError: not an iterable of states.
        ValueError: empty, or an item names no state.
    """
    if isinstance(states, (str, ExecutionState)):
        states = (states,)
    try:
        items = list(states)
    except TypeError:
        raise TypeError(f"{field_name} must be a list of execution states, got {states!r}") from None
    if not items:
        raise ValueError(f"{field_name} must name at least one execution state")
    coerced = [ExecutionState.coerce(item, field_name=field_name).value for item in items]
    return tuple(dict.fromkeys(coerced))


def check_disjoint_states(success_states: tuple[str, ...], failure_states: tuple[str, ...]) -> None:
    """Raise ValueError naming the states that are both success and failure states."""
    overlap = sorted(set(success_states) & set(failure_states))
    if overlap:
        raise ValueError(
            f"success_states {list(success_states)} and failure_states {list(failure_states)} overlap on "
            f"{overlap}; a state can only be one of them"
        )


@overload
def positive_seconds(value: object, field_name: str, *, allow_none: Literal[False] = False) -> float: ...
@overload
def positive_seconds(value: object, field_name: str, *, allow_none: bool) -> float | None: ...
def positive_seconds(value: object, field_name: str, *, allow_none: bool = False) -> float | None:
    """Seconds as a float from a number or a ``timedelta`` above 0 (or None, when allowed).

    The one check of a duration for every class of the provider.

    Raises:
        TypeError: not a number or ``timedelta`` (``True`` and ``"5"`` are refused).
        ValueError: zero, negative, NaN or infinite.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        expected = "a number of seconds or a timedelta" + (", or None" if allow_none else "")
        raise TypeError(f"{field_name} must be {expected}, got {type(value).__name__} {shown(value)}")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"{field_name} must be a number of seconds above 0, got {value!r}")
    return seconds


#: Longest execution id accepted; Core's ids are UUIDs, far shorter.
MAX_EXECUTION_ID_LENGTH = 1024


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)``, shortened: error messages name a bad value without flooding logs."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def check_bool(value: object, *, field_name: str) -> bool:
    """Return ``value`` when it is a bool; TypeError naming ``field_name`` otherwise ("false" is truthy)."""
    if not isinstance(value, bool):
        raise TypeError(f"{field_name} must be True or False, got {type(value).__name__} {shown(value)}")
    return value


def is_template_value(value: object) -> bool:
    """True for values only known at run time (an XComArg, a mapped argument): checked in ``execute``."""
    return not isinstance(value, (str, int, float, bool, dict, list, tuple, type(None)))


def check_execution_id(value: object, *, field_name: str = "execution_id") -> str:
    """Return ``value`` when it is a usable execution id (or workflow name, with ``field_name``).

    Raises:
        TypeError: not a string.
        ValueError: empty, blank or longer than ``MAX_EXECUTION_ID_LENGTH`` characters.
    """
    if not isinstance(value, str):
        raise TypeError(f"{field_name} must be a string, got {type(value).__name__} {value!r}")
    if not value.strip():
        raise ValueError(f"{field_name} must not be empty, got {value!r}")
    if len(value) > MAX_EXECUTION_ID_LENGTH:
        raise ValueError(
            f"{field_name} is {len(value)} characters long; at most {MAX_EXECUTION_ID_LENGTH} expected"
        )
    return value
