"""Seeding the emulator: the built-in demo set and JSON scenario files.

A scenario is ``{"workflows": ..., "executions": [...]}``. ``workflows`` maps a name to its step
names (or is a list of ``{"name", "steps"}``). Each execution names its ``workflow`` and may
give ``execution_id``, ``inputs``, the plan keys of ``start_execution`` (``fail_at``,
``fail_times``, ``error_kind``, ``error_message``, ``sleep_at``, ``sleep_ms``, ``approval_at``,
``approval_timeout_ms``), then what to do after starting it: ``advance`` (a number of steps),
``settle`` (run until it fails, sleeps, waits or completes) or ``complete``; ``count`` seeds that
many copies (``execution_id`` then gets ``-1``, ``-2``... appended). Seeding is idempotent for
executions with an ``execution_id``: one that exists already is left alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cerebelum_provider.emulator.engine import Engine
from cerebelum_provider.emulator.events import Plan

_PLAN_KEYS = set(Plan.__dataclass_fields__)
_EXECUTION_KEYS = _PLAN_KEYS | {
    "workflow",
    "execution_id",
    "inputs",
    "advance",
    "settle",
    "complete",
    "count",
}

DEMO_SCENARIO: dict[str, Any] = {
    "workflows": {
        "orders": ["validate", "charge", "ship", "notify"],
        "billing": ["invoice", "collect", "reconcile"],
    },
    "executions": [
        {
            "workflow": "orders",
            "execution_id": "demo-orders-completed",
            "inputs": {"order_id": 1001},
            "complete": True,
        },
        {
            "workflow": "orders",
            "execution_id": "demo-orders-running",
            "inputs": {"order_id": 1002},
            "advance": 1,
        },
        {
            "workflow": "orders",
            "execution_id": "demo-orders-sleeping",
            "inputs": {"order_id": 1003},
            "sleep_at": "charge",
            "sleep_ms": 15_000,
            "settle": True,
        },
        {
            "workflow": "orders",
            "execution_id": "demo-orders-approval",
            "inputs": {"order_id": 1004, "amount": 99.5},
            "approval_at": "ship",
            "settle": True,
        },
        {
            "workflow": "orders",
            "execution_id": "demo-orders-failed",
            "inputs": {"order_id": 1005},
            "fail_at": "ship",
            "fail_times": 1,
            "error_kind": "carrier_unavailable",
            "error_message": "carrier API answered 503",
            "settle": True,
        },
        {
            "workflow": "billing",
            "execution_id": "demo-billing-completed",
            "inputs": {"invoice": "INV-1"},
            "complete": True,
        },
        {"workflow": "billing", "execution_id": "demo-billing-running", "inputs": {"invoice": "INV-2"}},
        {
            "workflow": "billing",
            "execution_id": "demo-billing-sleeping",
            "inputs": {"invoice": "INV-3"},
            "sleep_at": "invoice",
            "sleep_ms": 20_000,
            "settle": True,
        },
        {
            "workflow": "billing",
            "execution_id": "demo-billing-failed",
            "inputs": {"invoice": "INV-4"},
            "fail_at": "collect",
            "fail_times": 1,
            "error_kind": "payment_declined",
            "error_message": "card declined",
            "settle": True,
        },
    ],
}


def load_scenario_file(path: str | Path) -> dict[str, Any]:
    """Read a scenario file. Raises ValueError when it is not a JSON object."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        scenario = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"scenario file {path} is not valid JSON: {error}") from error
    if not isinstance(scenario, dict):
        # A file with the wrong content is a bad value, not a bad type of argument.
        raise ValueError(  # noqa: TRY004
            f"scenario file {path} must hold a JSON object, got {type(scenario).__name__}"
        )
    return scenario


def seed(engine: Engine, scenario: dict[str, Any]) -> list[str]:
    """Define the scenario's workflows and start its executions; return the ids started now.

    Raises:
        ValueError / TypeError: a malformed scenario (naming the bad entry).
    """
    unknown = set(scenario) - {"workflows", "executions"}
    if unknown:
        raise ValueError(f"unknown scenario keys {sorted(unknown)}; expected 'workflows' and 'executions'")
    for name, steps in _workflows(scenario.get("workflows") or {}):
        if engine.defined_timeline(name) != tuple(steps):
            engine.define_workflow(name, steps)
    started: list[str] = []
    with engine.batch():
        for number, spec in enumerate(scenario.get("executions") or []):
            started.extend(_seed_execution(engine, number, spec))
    return started


def seed_demo(engine: Engine) -> list[str]:
    """Seed the demo set (two workflows; running, sleeping, waiting, completed and failed runs)."""
    return seed(engine, DEMO_SCENARIO)


def _workflows(workflows: Any) -> list[tuple[str, list[str]]]:
    if isinstance(workflows, dict):
        return list(workflows.items())
    if isinstance(workflows, list) and all(
        isinstance(w, dict) and {"name", "steps"} <= set(w) for w in workflows
    ):
        return [(w["name"], w["steps"]) for w in workflows]
    raise ValueError(
        f"scenario 'workflows' must map names to step lists or be a list of {{name, steps}}, "
        f"got {workflows!r}"
    )


def _seed_execution(engine: Engine, number: int, spec: Any) -> list[str]:
    if not isinstance(spec, dict) or "workflow" not in spec:
        raise ValueError(f"scenario execution #{number} must be an object with a 'workflow', got {spec!r}")
    unknown = set(spec) - _EXECUTION_KEYS
    if unknown:
        raise ValueError(f"scenario execution #{number} has unknown keys {sorted(unknown)}")
    count = spec.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"scenario execution #{number}: count must be an int >= 1, got {count!r}")
    plan = {key: spec[key] for key in _PLAN_KEYS if key in spec}
    base_id = spec.get("execution_id")
    started = []
    for copy in range(1, count + 1):
        execution_id = base_id if base_id is None or count == 1 else f"{base_id}-{copy}"
        if execution_id is not None and engine.get(execution_id) is not None:
            continue
        execution_id = engine.start_execution(
            spec["workflow"], spec.get("inputs"), plan=plan, execution_id=execution_id
        )
        if spec.get("complete"):
            engine.complete(execution_id)
        elif spec.get("settle"):
            engine.run_until_settled(execution_id)
        elif spec.get("advance"):
            engine.advance(spec["advance"], execution_id)
        started.append(execution_id)
    return started
