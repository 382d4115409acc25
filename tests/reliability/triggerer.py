"""Run a trigger the way Airflow's triggerer does, in this process.

``TriggererHarness.run`` rebuilds the trigger from its ``serialize()`` output (the class looked up
through the triggerer's own ``get_trigger_by_classpath``) and drives it with
``airflow.jobs.triggerer_job_runner.TriggerRunner.run_trigger``, the coroutine the triggerer
runs for every trigger; the events it fires are the ones the runner queues for the database.
"""

from __future__ import annotations

from typing import Any

from airflow.triggers.base import BaseTrigger

TRIGGER_ID = 1


class TriggererHarness:
    """One ``TriggerRunner`` (one triggerer process) running one trigger."""

    def __init__(self) -> None:
        from airflow.jobs.triggerer_job_runner import TriggerRunner

        self.runner = TriggerRunner()

    def rebuild(self, trigger: BaseTrigger) -> BaseTrigger:
        """A new trigger made from ``trigger.serialize()``, as the triggerer makes it from its row."""
        classpath, kwargs = trigger.serialize()
        return self.runner.get_trigger_by_classpath(classpath)(**kwargs)

    async def run(self, trigger: BaseTrigger) -> list[dict[str, Any]]:
        """Run a rebuilt ``trigger`` to its end; return the payloads of the events queued."""
        rebuilt = self.rebuild(trigger)
        self.runner.triggers[TRIGGER_ID] = {"name": repr(rebuilt), "events": 0}  # type: ignore[typeddict-item]
        await self.runner.run_trigger(TRIGGER_ID, rebuilt)
        return self.payloads

    @property
    def payloads(self) -> list[dict[str, Any]]:
        """Every event payload the runner queued so far."""
        # Entries are (trigger_id, event) tuples on Airflow 3.2 and TriggerEventEntry named
        # tuples, with the event second, on 3.3.
        return [entry[1].payload for entry in self.runner.events]

    @property
    def counted_events(self) -> int:
        """How many events the runner counted for the trigger (0 before it started)."""
        details = self.runner.triggers.get(TRIGGER_ID)
        return details["events"] if details else 0


async def run_in_triggerer(trigger: BaseTrigger) -> list[dict[str, Any]]:
    """Run ``trigger`` in a fresh harness; return the event payloads, checking they were counted."""
    harness = TriggererHarness()
    payloads = await harness.run(trigger)
    assert harness.counted_events == len(payloads)
    return payloads
