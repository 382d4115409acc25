"""``CerebelumExecutionSensor``: wait for a Cerebelum execution to reach a success state.

Works in poke, reschedule and deferrable mode with the same outcomes:

- a success state: the task succeeds and returns the execution as a dict (XCom ``return_value``);
- a failure state: ``AirflowFailException`` with Core's error kind and message (no retry: the
  execution will not change by itself); with ``soft_fail`` the task is skipped;
- an unknown execution id: ``AirflowFailException`` naming the id and Core's address; with
  ``soft_fail`` the task is skipped;
- ``timeout`` reached: ``AirflowSensorTimeout``; with ``soft_fail`` the task is skipped. No check
  runs past it: each call to Core in the worker (its retries, a wait for Core's next rate-limit
  window) ends by the time the task has left, and a check that found Core unreachable with no
  time left for another ends the wait at once, naming what ended it;
- Core unreachable: in poke and reschedule mode a poke that finds Core unreachable (after the
  client's own retries) counts as "not done yet", so a Core restart never fails the task; the
  sensor's ``timeout`` bounds the wait and so does ``unavailable_timeout`` (15 minutes by
  default), counted from the start of the first failed check. In deferrable mode the trigger
  retries with backoff under the same two bounds, counting from the sensor's own first failed
  check. When a bound is hit the task fails with ``CoreUnavailableError`` saying since when (UTC)
  and at which address (Airflow retries apply; ``soft_fail`` does not skip it: it is a fault,
  not an answer about the execution);
- a refused token, a TLS failure, Core crashing on the status query (the released Cores do over
  gRPC) or another RPC error: the task fails with that error at once.

Both the worker's checks and the trigger's event reach their outcome through
``cerebelum_provider._outcome``, the rules every operator follows too. Importing this module
imports no grpc, protobuf or tenacity, so parsing a DAG stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowFailException, AirflowSensorTimeout, AirflowSkipException

from cerebelum_provider import exceptions
from cerebelum_provider._arguments import (
    DEFAULT_CONN_ID,
    check_bool,
    check_conn_id_argument,
    check_disjoint_states,
    check_execution_id,
    check_execution_id_argument,
    coerce_states,
    positive_seconds,
    state_values,
)
from cerebelum_provider._outage import DEFAULT_UNAVAILABLE_TIMEOUT, Outage
from cerebelum_provider._outcome import task_arguments, task_outcome
from cerebelum_provider.links.cerebelum import (
    CerebelumExecutionLink,
    publish_execution_id,
    remember_execution_id,
)
from cerebelum_provider.models import ExecutionState, ExecutionStatus
from cerebelum_provider.operators._common import check_once, deferral_timeout, resolve_deferrable, task_hook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from cerebelum_provider.client import SyncExecutionClient
    from cerebelum_provider.hooks.cerebelum import CerebelumHook


class CerebelumExecutionSensor(BaseSensorOperator):
    """Wait until a Cerebelum execution reaches one of ``success_states``.

    Args:
        execution_id: the execution to watch (templated).
        cerebelum_conn_id: the Airflow connection to Core (templated).
        success_states: states that end the wait successfully (enum, name or value).
        failure_states: states that fail the task; must not overlap ``success_states``.
        poll_interval: seconds between checks, in every mode; same as ``poke_interval``
            (give one of them).
        max_sleep_wait: deferrable mode: longest single wait while the execution sleeps.
        unavailable_timeout: seconds Core may stay unreachable before the task fails with
            ``CoreUnavailableError``: 15 minutes by default (``DEFAULT_UNAVAILABLE_TIMEOUT``);
            None means only ``timeout`` bounds the wait. Counted within one process and carried
            into the trigger: in reschedule mode only ``timeout`` applies.
        deferrable: wait in the triggerer (default: ``[operators] default_deferrable``, read when
            the sensor is built).
        include_outputs: put the step outputs in the XCom value (bounded in size: see
            ``ExecutionStatus.to_xcom``); without it the value carries ids, states, progress and
            Core's error.

    Returns (from ``execute``): the final execution as a dict (``ExecutionStatus.to_xcom()``).

    Raises:
        TypeError, ValueError: invalid arguments, at construction.
    """

    template_fields: Sequence[str] = ("execution_id", "cerebelum_conn_id")
    operator_extra_links = (CerebelumExecutionLink(),)
    ui_color = "#d6eaf8"

    def __init__(
        self,
        *,
        execution_id: str,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        success_states: Iterable[ExecutionState | str] = (ExecutionState.COMPLETED,),
        failure_states: Iterable[ExecutionState | str] = (ExecutionState.FAILED,),
        poll_interval: float | None = None,
        max_sleep_wait: float = 300.0,
        unavailable_timeout: float | None = DEFAULT_UNAVAILABLE_TIMEOUT,
        deferrable: bool | None = None,
        include_outputs: bool = False,
        **kwargs: Any,
    ) -> None:
        if poll_interval is not None:
            if "poke_interval" in kwargs:
                raise ValueError("give poll_interval or poke_interval, not both (they are the same setting)")
            kwargs["poke_interval"] = positive_seconds(poll_interval, "poll_interval")
        super().__init__(**kwargs)
        self.execution_id = check_execution_id_argument(execution_id)
        self.cerebelum_conn_id = check_conn_id_argument(cerebelum_conn_id)
        self.success_states = state_values(coerce_states(success_states, "success_states"))
        self.failure_states = state_values(coerce_states(failure_states, "failure_states"))
        check_disjoint_states(self.success_states, self.failure_states)
        if self.poke_interval <= 0:
            raise ValueError(f"poke_interval must be above 0 seconds, got {self.poke_interval}")
        self.max_sleep_wait = positive_seconds(max_sleep_wait, "max_sleep_wait")
        self.unavailable_timeout = positive_seconds(
            unavailable_timeout, "unavailable_timeout", allow_none=True
        )
        self.deferrable = resolve_deferrable(deferrable)
        self.include_outputs = check_bool(include_outputs, field_name="include_outputs")
        self._client: SyncExecutionClient | None = None
        self._outage = Outage(self.unavailable_timeout)
        # When this run's wait ends (monotonic clock), set by execute(); None: no deadline.
        self._wait_ends: float | None = None

    @cached_property
    def hook(self) -> CerebelumHook:
        """The hook for the rendered ``cerebelum_conn_id``, built once per task."""
        return task_hook(self.cerebelum_conn_id)

    def execute(self, context: Context) -> Any:
        """Wait in the mode chosen; return the final execution dict."""
        with task_arguments():
            self.execution_id = check_execution_id(self.execution_id)
        publish_execution_id(self, context, self.execution_id)
        # Each run of the task counts its own outage: an operator object can outlive a run (dag.test()
        # runs the parsed DAG's own task objects), and a past run's outage would end this one at once.
        self._outage = Outage(self.unavailable_timeout)
        self._wait_ends = time.monotonic() + self._timeout_left(context)
        try:
            if not self.deferrable:
                return super().execute(context)
            return self._check_then_defer(context)
        finally:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _timeout_left(self, context: Context) -> float:
        """Seconds left of ``timeout``, counted as Airflow's sensor counts it: from the start of this
        run, or in reschedule mode from the start of the first try."""
        if not self.reschedule:
            return self.timeout
        first_try = context["ti"].get_first_reschedule_date(context)
        if first_try is None:
            return self.timeout
        return self.timeout - (datetime.now(timezone.utc) - first_try).total_seconds()

    def _check_then_defer(self, context: Context) -> Any:
        # The deadline counts from here, not from after the first check (the client's retries).
        started = time.time()
        try:
            result = self.poke(context)
        except (AirflowSensorTimeout, AirflowFailException) as error:
            if self.soft_fail:
                raise AirflowSkipException(f"Skipping due to soft_fail: {error}") from error
            raise
        if result:
            return result.xcom_value
        from cerebelum_provider.triggers.cerebelum import CerebelumExecutionTrigger

        end_time = started + self.timeout
        self.defer(
            trigger=CerebelumExecutionTrigger(
                execution_id=self.execution_id,
                cerebelum_conn_id=self.cerebelum_conn_id,
                poll_interval=self.poke_interval,
                success_states=self.success_states,
                failure_states=self.failure_states,
                end_time=end_time,
                max_sleep_wait=self.max_sleep_wait,
                unavailable_timeout=self.unavailable_timeout,
                include_outputs=self.include_outputs,
                unavailable_since=self._outage.since_epoch,
            ),
            method_name="execute_complete",
            timeout=deferral_timeout(end_time),
        )

    def poke(self, context: Context) -> PokeReturnValue:
        """Check the execution once and log one progress line.

        Returns:
            ``PokeReturnValue(True, execution dict)`` in a success state, else not done.

        Raises:
            AirflowFailException: a failure state, or no such execution.
            AirflowSensorTimeout: Core unreachable, and ``timeout`` leaves no time for another check.
            CoreUnavailableError: Core unreachable for longer than ``unavailable_timeout``.
            CerebelumAuthError, CerebelumTLSError, CerebelumRPCError: any other fault.
        """
        from cerebelum_provider.client import calls_end_within

        if self._client is None:
            self._client = self.hook.get_client()
        client = self._client
        try:
            # No retry and no wait for Core's next rate-limit window outlasts the sensor's timeout.
            with calls_end_within(self._time_left()):
                status = check_once(client, self.execution_id, self._outage, self.log)
        except exceptions.CoreUnavailableError as error:
            self._note_unavailable(client.address, error)
            return PokeReturnValue(is_done=False)
        return self._judge(status)

    def _note_unavailable(self, address: str, error: exceptions.CoreUnavailableError) -> None:
        outage = self._outage
        if outage.exhausted:
            raise exceptions.CoreUnavailableError(
                f"{outage.gave_up(address, self.execution_id)}: {error.message}",
                core_address=address,
                execution_id=self.execution_id,
            ) from error
        left = self._time_left()
        if left is not None and left < self.poke_interval:
            # The next check would come after the timeout: end the wait now, saying what ended it.
            raise AirflowSensorTimeout(
                f"{outage.gave_up(address, self.execution_id)}; the sensor's timeout ({self.timeout:g}s) "
                f"leaves no time for another check: {error.message}"
            ) from error
        self.log.warning("%s (%s); will check again", outage.describe(address), error.message)

    def _time_left(self) -> float | None:
        """Seconds until this run's wait ends (negative once past), or None outside ``execute``."""
        return None if self._wait_ends is None else self._wait_ends - time.monotonic()

    def _judge(self, status: ExecutionStatus) -> PokeReturnValue:
        state = status.status.value
        if state in self.failure_states:
            raise AirflowFailException(status.failure_message())
        xcom_value = status.to_xcom(include_outputs=self.include_outputs)
        return PokeReturnValue(is_done=state in self.success_states, xcom_value=xcom_value)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        """Turn the trigger's event into the task's outcome (see the module docstring).

        Returns:
            The final execution dict on ``"success"``.
        """
        remember_execution_id(self, event)
        execution = task_outcome(event, failure_is_final=True, timeout_error=AirflowSensorTimeout)
        self.log.info(
            "Cerebelum execution %s reached %s", execution.get("execution_id"), execution.get("status")
        )
        return execution
