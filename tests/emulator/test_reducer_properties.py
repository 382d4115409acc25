"""Property: whatever the engine is told to do, its projections are exactly a replay of the log."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cerebelum_provider.emulator.engine import Engine
from cerebelum_provider.emulator.events import Phase
from cerebelum_provider.emulator.store import EventStore

STEPS = ["a", "b", "c"]

plans = st.fixed_dictionaries(
    {},
    optional={
        "fail_at": st.integers(0, 2),
        "fail_times": st.integers(0, 2),
        "sleep_at": st.integers(0, 2),
        "sleep_ms": st.integers(0, 5_000),
        "approval_at": st.integers(0, 2),
    },
)
actions = st.one_of(
    st.tuples(st.just("start"), plans),
    st.tuples(st.just("advance"), st.integers(0, 3), st.integers(0, 9) | st.none()),
    st.tuples(st.just("advance_time"), st.floats(0, 6)),
    st.tuples(
        st.sampled_from(
            [
                "approve",
                "resume",
                "resume_already_running",
                "resume_after_restart",
                "stop",
                "complete",
                "corrupt",
            ]
        ),
        st.integers(0, 9),
    ),
)


def act(engine: Engine, ids: list[str], action: tuple) -> None:
    kind = action[0]
    if kind == "start":
        ids.append(engine.start_execution("w", {"n": len(ids)}, plan=action[1]))
    elif kind == "advance":
        target = ids[action[2] % len(ids)] if ids and action[2] is not None else None
        engine.advance(action[1], target)
    elif kind == "advance_time":
        engine.advance_time(action[1])
    elif ids:
        target = ids[action[1] % len(ids)]
        if kind == "approve" and engine.get(target).phase is Phase.WAITING_FOR_APPROVAL:
            engine.approve(target)
        elif kind == "resume":
            engine.resume(target)
        elif kind == "resume_already_running":
            engine.resume_outcome(target, without_effect="already_running")
        elif kind == "resume_after_restart":
            engine.resume_outcome(target, without_effect="resumed")
        elif kind == "stop":
            engine.stop(target)
        elif kind == "complete":
            engine.complete(target)
        elif kind == "corrupt":
            engine.append_raw_event(target, "approval_granted", {"index": 0})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(actions, max_size=25))
def test_projections_equal_a_replay_and_indexes_agree(script):
    store = EventStore(None)
    engine = Engine(store, real_time=False)
    engine.define_workflow("w", STEPS)
    ids: list[str] = []
    for action in script:
        act(engine, ids, action)

    reopened = Engine(store, real_time=False)
    for execution_id in ids:
        projection = engine.get(execution_id)
        assert engine.replay_execution(execution_id) == projection
        assert reopened.get(execution_id) == projection
    assert reopened.now() == engine.now()

    page, total = engine.list(None, None, 100, 0)
    assert total == len(ids)
    assert [p.execution_id for p in page] == sorted(ids)
    for phase in Phase:
        in_phase = [p.execution_id for p in engine.list(None, phase, 100, 0)[0]]
        assert sorted(in_phase) == sorted(engine.execution_ids(phase))
        assert engine.list("w", phase, 100, 0)[1] == len(in_phase)
    store.close()
