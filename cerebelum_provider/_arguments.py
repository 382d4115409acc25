"""Argument checks shared by the trigger, the sensor and the operators; pure Python, no imports of cost.

Every check raises a ``TypeError``/``ValueError`` that names the argument and what was expected,
before anything is sent to Core.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from cerebelum_provider.models import ExecutionState, ExecutionStatus


def coerce_states(states: Iterable[ExecutionState | str] | ExecutionState | str, field_name: str) -> tuple[str, ...]:
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


def positive_seconds(value: Any, field_name: str, *, allow_none: bool = False) -> float | None:
    """Return ``value`` as float seconds; ValueError naming ``field_name`` unless a finite number above 0."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{field_name} must be a number of seconds above 0, got {value!r}")
    return float(value)


def check_execution_id(execution_id: Any) -> str:
    """Return ``execution_id``; TypeError unless a string, ValueError when blank."""
    if not isinstance(execution_id, str):
        raise TypeError(f"execution_id must be a string, got {type(execution_id).__name__} {execution_id!r}")
    if not execution_id.strip():
        raise ValueError(f"execution_id must not be empty, got {execution_id!r}")
    return execution_id


def failure_message(status: ExecutionStatus) -> str:
    """``Execution X (wf) ended in EXECUTION_FAILED: kind: message`` with Core's error when given."""
    text = f"Cerebelum execution {status.execution_id} ({status.workflow_name}) ended in {status.status.value}"
    if status.error:
        text += f": {status.error.get('kind') or 'error'}: {status.error.get('message') or ''}".rstrip()
    return text
