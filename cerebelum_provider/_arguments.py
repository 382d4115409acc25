"""Argument checks shared by the trigger, the sensor and the operators; pure Python, no imports of cost.

Every check raises a ``TypeError``/``ValueError`` that names the argument and what was expected,
before anything is sent to Core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import timedelta
from typing import Literal, TypeVar, overload

from cerebelum_provider.models import ExecutionState

#: The Airflow connection every Cerebelum class uses when given none.
DEFAULT_CONN_ID = "cerebelum_default"

_Given = TypeVar("_Given")


def coerce_states(
    states: object, field_name: str = "states", *, allow_unspecified: bool = True
) -> tuple[ExecutionState, ...]:
    """One state or an iterable of states (enums, names or values) as a tuple of enums, no repeats.

    The one reading of states for every class; callers that keep wire names (trigger kwargs must
    serialize) take each state's ``.value``.

    Raises:
        TypeError: not a state, a string, or an iterable of them.
        ValueError: empty, a string that names no state, or UNSPECIFIED where it is not allowed
            (as a list filter Core reads it as "no filter").
    """
    if isinstance(states, (ExecutionState, str)):
        items: list[object] = [states]
    elif isinstance(states, Iterable) and not isinstance(states, (bytes, dict)):
        items = list(states)
    else:
        raise TypeError(
            f"{field_name} must be an execution state or an iterable of them, "
            f"got {type(states).__name__} {shown(states)}"
        )
    if not items:
        raise ValueError(f"{field_name} must name at least one execution state, got {states!r}")
    coerced: list[ExecutionState] = []
    for item in items:
        state = ExecutionState.coerce(item, field_name=field_name)  # type: ignore[arg-type]
        if state is ExecutionState.UNSPECIFIED and not allow_unspecified:
            raise ValueError(f"{field_name} cannot contain UNSPECIFIED (Core reads it as 'no filter')")
        if state not in coerced:
            coerced.append(state)
    return tuple(coerced)


def state_values(states: Iterable[ExecutionState]) -> tuple[str, ...]:
    """The wire names (``EXECUTION_FAILED``) of states, as trigger kwargs and events carry them."""
    return tuple(state.value for state in states)


def check_disjoint_states(success_states: tuple[str, ...], failure_states: tuple[str, ...]) -> None:
    """Raise ValueError naming the states that are both success and failure states."""
    overlap = sorted(set(success_states) & set(failure_states))
    if overlap:
        raise ValueError(
            f"success_states {list(success_states)} and failure_states {list(failure_states)} overlap on "
            f"{overlap}; a state can only be one of them"
        )


@overload
def positive_seconds(
    value: object,
    field_name: str,
    *,
    allow_none: Literal[False] = False,
    allow_zero: bool = False,
    maximum: float | None = None,
) -> float: ...
@overload
def positive_seconds(
    value: object,
    field_name: str,
    *,
    allow_none: bool,
    allow_zero: bool = False,
    maximum: float | None = None,
) -> float | None: ...
def positive_seconds(
    value: object,
    field_name: str,
    *,
    allow_none: bool = False,
    allow_zero: bool = False,
    maximum: float | None = None,
) -> float | None:
    """Seconds as a float from a number or a ``timedelta`` above 0 (or None, when allowed; 0, when
    ``allow_zero``; at most ``maximum``, when given).

    The one check of a duration for every class of the provider.

    Raises:
        TypeError: not a number or ``timedelta`` (``True`` and ``"5"`` are refused).
        ValueError: zero (unless allowed), negative, above ``maximum``, NaN or infinite.
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
    too_small = seconds < 0 if allow_zero else seconds <= 0
    if not math.isfinite(seconds) or too_small or (maximum is not None and seconds > maximum):
        bound = "0 or more" if allow_zero else "above 0"
        if maximum is not None:
            bound += f" and at most {maximum:g}"
        raise ValueError(f"{field_name} must be a number of seconds {bound}, got {value!r}")
    return seconds


def check_int(value: object, *, field_name: str, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` when it is an int (not a bool) of at least ``minimum`` (and at most ``maximum``).

    The one check of a count or a size, client and provider alike.

    Raises:
        TypeError: not an int (``True`` and ``"10"`` are refused).
        ValueError: outside the range.
    """
    allowed = f"in {minimum}..{maximum}" if maximum is not None else f"at least {minimum}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{field_name} must be an int {allowed}, got {type(value).__name__} {shown(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{field_name} must be {allowed}, got {value}")
    return value


#: Longest execution id (or workflow name) accepted; Core's ids are UUIDs, far shorter.
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


def is_jinja(value: object) -> bool:
    """True for a string holding a Jinja template: checked in ``execute``, once rendered."""
    return isinstance(value, str) and "{{" in value


def check_execution_id(value: object, *, field_name: str = "execution_id") -> str:
    """Return ``value`` when it is a usable id or name (an execution id, a workflow name, a
    correlation id, with ``field_name``): the one check of an identifier, client and provider alike.

    Raises:
        TypeError: not a string.
        ValueError: empty, blank or longer than ``MAX_EXECUTION_ID_LENGTH`` characters.
    """
    if not isinstance(value, str):
        raise TypeError(f"{field_name} must be a non-empty string, got {type(value).__name__} {shown(value)}")
    if not value.strip():
        raise ValueError(f"{field_name} must be a non-empty string, got {value!r}")
    if len(value) > MAX_EXECUTION_ID_LENGTH:
        raise ValueError(
            f"{field_name} is {len(value)} characters long; at most {MAX_EXECUTION_ID_LENGTH} are accepted"
        )
    return value


def check_execution_id_argument(value: _Given) -> _Given:
    """``value`` as a constructor got it, checked now (``check_execution_id``) unless it is only known
    at run time (an XComArg, a mapped argument): ``execute`` checks it once rendered."""
    if not is_template_value(value):
        check_execution_id(value)
    return value


def check_conn_id(value: object, *, field_name: str = "cerebelum_conn_id") -> str:
    """Return ``value`` when it is an Airflow connection id; ValueError naming ``field_name`` otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{field_name} must be a non-empty string, got {shown(value)}")
    return value


def check_conn_id_argument(value: _Given) -> _Given:
    """``value`` as a constructor got it, checked now (``check_conn_id``) unless it is a template
    (an XComArg, a Jinja string): the hook checks it once rendered."""
    if not is_template_value(value) and not is_jinja(value):
        check_conn_id(value)
    return value


def check_tags(tags: object, *, field_name: str = "tags") -> list[str]:
    """Tags as a list of non-empty strings: the one check for the client and the execute operator.

    Raises:
        TypeError: not a list or tuple (a single string is refused: it would be split into letters),
            or an item that is not a string.
        ValueError: an empty tag.
    """
    if isinstance(tags, str) or not isinstance(tags, (list, tuple)):
        raise TypeError(f"{field_name} must be a list of strings, got {type(tags).__name__} {shown(tags)}")
    for tag in tags:
        if not isinstance(tag, str):
            raise TypeError(f"{field_name} must be a list of strings; {tag!r} is a {type(tag).__name__}")
        if not tag.strip():
            raise ValueError(f"{field_name} must be non-empty strings, got {tag!r}")
    return list(tags)


#: What a checked resume does when Core did not resume the execution: fail, or rerun it.
ON_NOT_RESUMED_CHOICES = ("fail", "rerun")


def check_on_not_resumed(value: object, *, field_name: str = "on_not_resumed") -> str:
    """``"fail"`` or ``"rerun"``; ValueError naming the value and the choices otherwise."""
    if not isinstance(value, str) or value not in ON_NOT_RESUMED_CHOICES:
        raise ValueError(
            f"{field_name} must be one of {', '.join(map(repr, ON_NOT_RESUMED_CHOICES))}, got {shown(value)}"
        )
    return value
