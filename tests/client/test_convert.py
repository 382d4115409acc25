"""The proto -> model converter never crashes on odd messages (Hypothesis), and converts exactly."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerebelum_provider.client import _convert
from cerebelum_provider.models import ExecutionState, ExecutionStatus
from cerebelum_provider.proto import worker_service_pb2 as pb

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=40,
)
json_objects = st.dictionaries(st.text(max_size=10), json_values, max_size=8)
seconds = st.integers(min_value=-(2**40), max_value=2**40)


def _same(left, right) -> bool:
    """Equality where NaN equals NaN and 1 equals 1.0."""
    if isinstance(left, float) and math.isnan(left):
        return isinstance(right, float) and math.isnan(right)
    if isinstance(left, dict):
        return (
            isinstance(right, dict)
            and left.keys() == right.keys()
            and all(_same(left[k], right[k]) for k in left)
        )
    if isinstance(left, (list, tuple)):
        return isinstance(right, list) and len(left) == len(right) and all(map(_same, left, right))
    return left == right and (type(left) is bool) == (type(right) is bool)


@st.composite
def status_messages(draw):
    message = pb.ExecutionStatus(
        execution_id=draw(st.text(max_size=40)),
        workflow_name=draw(st.text(max_size=20)),
        status=draw(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        current_step_index=draw(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
        total_steps=draw(st.integers(min_value=-(2**31), max_value=2**31 - 1)),
    )
    for field in ("started_at", "completed_at"):
        if draw(st.booleans()):
            getattr(message, field).seconds = draw(seconds)
            getattr(message, field).nanos = draw(st.integers(min_value=0, max_value=999_999_999))
    if draw(st.booleans()):
        message.inputs.update(draw(json_objects))
    for name, output in draw(st.dictionaries(st.text(max_size=5), json_objects, max_size=3)).items():
        message.step_outputs[name].update(output)
    for index in range(draw(st.integers(min_value=0, max_value=3))):
        step = message.completed_steps.add(step_name=f"s{index}", step_index=index)
        if draw(st.booleans()):
            step.started_at.seconds = draw(seconds)
        if draw(st.booleans()):
            step.output.update(draw(json_objects))
    if draw(st.booleans()):
        message.error.kind = draw(st.sampled_from(["step_error", "reconstruction_error", ""]))
    if draw(st.booleans()):
        message.sleep_info.remaining_ms = draw(st.integers(min_value=-(2**63), max_value=2**63 - 1))
        if draw(st.booleans()):
            message.sleep_info.sleep_started_at.seconds = draw(seconds)
    if draw(st.booleans()):
        message.approval_info.timeout_ms = draw(st.integers(min_value=0, max_value=2**63 - 1))
    # Round trip through bytes: what the client really decodes.
    return pb.ExecutionStatus.FromString(message.SerializeToString())


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(status_messages())
def test_any_status_message_converts_without_crashing(message):
    status = _convert.status_from_proto(message)
    assert isinstance(status.status, ExecutionState)
    for moment in (status.started_at, status.completed_at):
        assert moment is None or moment.tzinfo is timezone.utc
    assert status.elapsed_seconds is None or status.elapsed_seconds >= 0
    assert isinstance(status.inputs, dict)
    rebuilt = ExecutionStatus.from_dict(json.loads(json.dumps(status.to_dict(), default=str)))
    assert rebuilt.execution_id == status.execution_id and rebuilt.status is status.status


@settings(max_examples=50, deadline=None)
@given(json_objects)
def test_struct_round_trip_keeps_values_and_makes_integral_numbers_int(data):
    struct = _convert.python_to_struct(data, field_name="inputs")
    back = _convert.struct_to_python(struct)
    assert _same(data, back)

    def no_integral_floats(value):
        if isinstance(value, float):
            return not (math.isfinite(value) and value.is_integer())
        if isinstance(value, dict):
            return all(map(no_integral_floats, value.values()))
        if isinstance(value, list):
            return all(map(no_integral_floats, value))
        return True

    assert no_integral_floats(back)


def test_huge_struct():
    message = pb.ExecutionStatus(execution_id="big")
    message.inputs.update(
        {f"k{number}": [float(number), "x" * 10, {"n": number + 0.5}] for number in range(20_000)}
    )
    status = _convert.status_from_proto(pb.ExecutionStatus.FromString(message.SerializeToString()))
    assert len(status.inputs) == 20_000
    assert status.inputs["k19999"] == [19999, "x" * 10, {"n": 19999.5}]


def test_nan_and_infinity_stay_floats():
    message = pb.ExecutionStatus(execution_id="odd")
    message.inputs.update({"nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "big": 1e300})
    inputs = _convert.status_from_proto(message).inputs
    assert math.isnan(inputs["nan"]) and inputs["inf"] == math.inf and inputs["ninf"] == -math.inf
    assert inputs["big"] == int(1e300) and type(inputs["big"]) is int


def test_unknown_enum_number_is_unspecified():
    message = pb.ExecutionStatus.FromString(
        pb.ExecutionStatus(execution_id="e", status=42).SerializeToString()
    )
    assert _convert.status_from_proto(message).status is ExecutionState.UNSPECIFIED


def test_every_wire_state_has_a_model_state():
    for name, number in pb.ExecutionState.items():
        assert _convert.state_from_wire(number).value == name
        assert _convert.state_to_wire(ExecutionState(name)) == number


def test_missing_and_out_of_range_timestamps_are_none():
    message = pb.ExecutionStatus(execution_id="t")
    message.completed_at.seconds = 10**15  # far beyond year 9999
    status = _convert.status_from_proto(message)
    assert status.started_at is None and status.completed_at is None and status.elapsed_seconds is None


def test_timestamps_are_aware_utc_and_elapsed_runs_to_now_when_not_completed():
    message = pb.ExecutionStatus(execution_id="t", total_steps=0)
    message.started_at.FromSeconds(1_000)
    now = datetime.fromtimestamp(1_090, tz=timezone.utc)
    status = _convert.status_from_proto(message, now=now)
    assert status.started_at == datetime.fromtimestamp(1_000, tz=timezone.utc)
    assert status.elapsed_seconds == 90
    assert status.progress_percentage == 0.0


def test_not_found_answer_is_recognised_only_by_its_error_kind():
    assert _convert.is_not_found(pb.ExecutionStatus(error=pb.ErrorInfo(kind="not_found")))
    assert not _convert.is_not_found(pb.ExecutionStatus(workflow_name="unknown"))
    assert not _convert.is_not_found(pb.ExecutionStatus(error=pb.ErrorInfo(kind="step_error")))
