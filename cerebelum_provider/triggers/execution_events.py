"""``CerebelumExecutionEventTrigger``: start DAGs when Cerebelum executions enter a state.

An event trigger for Airflow's event-driven scheduling (``AssetWatcher``): it lists Core's
executions in the watched states every ``poll_interval`` and fires one event per execution that
*enters* one of them. What it has fired lives in the watcher's asset state store (Airflow 3.3),
so a triggerer restart neither fires an entry twice nor misses one that happened while it was down.
Every watcher that asks the same Core (connection id) for the same workflow and states shares one
poll (``shared_stream_key``, Airflow 3.3); each watcher decides on its own what is new to it.

Event payload (``TriggerEvent.payload``; the asset event's ``extra["payload"]``), JSON-safe::

    {
        "execution_id": str,
        "workflow_name": str,                  # "" when Core did not name it
        "state": "EXECUTION_FAILED" | ...,     # the watched state it entered
        "error_kind": str | None,              # Core's error, for a failed execution
        "error_message": str | None,
        "seen_at": str,                        # ISO 8601 UTC: the poll that saw the entry
    }

How an *entry* is told from an execution that stays in a state: each listed execution gets an
entry marker. Over Core's REST API it is the length of the execution's event log
(``events_count`` of the list summary): a resume and a new failure append events, so a second
failure has a new marker even when it happened between two polls. Over gRPC the list says no such
thing; the marker is what the status shows (error, step index, completed steps, finish, sleep and
approval start), and an execution that leaves the watched states between two polls enters them
again when it comes back. A resume followed by an identical failure within one poll interval is
therefore one entry over gRPC, two over REST.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
from collections.abc import AsyncIterator, Hashable, Iterable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseEventTrigger, TriggerEvent

from cerebelum_provider._arguments import (
    DEFAULT_CONN_ID,
    check_bool,
    check_conn_id,
    check_execution_id,
    coerce_states,
    positive_seconds,
)
from cerebelum_provider.exceptions import CerebelumError
from cerebelum_provider.models import ExecutionState, ExecutionStatus
from cerebelum_provider.triggers._gc import freeze_gc_once_if_configured

if TYPE_CHECKING:
    from cerebelum_provider.client import ExecutionClient

log = logging.getLogger(__name__)

#: Entries remembered across restarts at most: 6-byte digests, base64, stay under Airflow's
#: default ``[state_store] max_value_storage_bytes`` (64 KiB) with room to spare.
MAX_REMEMBERED_ENTRIES = 8000
_DIGEST_BYTES = 6
_STATE_FORMAT = 1


def _utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat()


def _entry_marker(execution: ExecutionStatus, events_count: int | None) -> str:
    """What changes when ``execution`` enters its state anew (see the module docstring)."""
    if events_count is not None:
        return f"events:{events_count}"
    error = execution.error or {}
    parts = [
        error.get("kind", ""),
        error.get("message", ""),
        str(execution.current_step_index),
        str(len(execution.completed_steps)),
        _utc_iso(execution.completed_at) if execution.completed_at else "",
        _utc_iso(execution.sleep_info.sleep_started_at)
        if execution.sleep_info and execution.sleep_info.sleep_started_at
        else "",
        _utc_iso(execution.approval_info.requested_at)
        if execution.approval_info and execution.approval_info.requested_at
        else "",
    ]
    return "status:" + "\x1f".join(parts)


def _digest(entry: dict[str, Any]) -> bytes:
    text = "\x1f".join((entry["execution_id"], entry["state"], entry["marker"]))
    return hashlib.blake2b(text.encode(), digest_size=_DIGEST_BYTES).digest()


async def _list_entries(
    client: ExecutionClient, workflow_name: str | None, state: str
) -> list[dict[str, Any]]:
    """Every execution Core lists in ``state`` (all pages), as snapshot entries."""
    entries = []
    async for execution in client.iter_executions(workflow_name=workflow_name, status=state):
        error = execution.error or None
        entries.append(
            {
                "execution_id": execution.execution_id,
                "workflow_name": execution.workflow_name,
                # The state asked for: REST lists an execution waiting for approval as running.
                "state": state,
                "marker": _entry_marker(execution, execution.events_count),
                "error_kind": error.get("kind") if error else None,
                "error_message": error.get("message") if error else None,
            }
        )
    return entries


class _Poller:
    """One poll loop's memory: the client, and the ids listed last time (to doubt an empty list)."""

    def __init__(self, cerebelum_conn_id: str, workflow_name: str | None, states: tuple[str, ...]) -> None:
        self.cerebelum_conn_id = cerebelum_conn_id
        self.workflow_name = workflow_name
        self.states = states
        self._client: ExecutionClient | None = None
        self._previous_ids: list[str] | None = None

    async def client(self) -> ExecutionClient:
        if self._client is None:
            from cerebelum_provider.hooks.cerebelum import CerebelumHook

            self._client = await CerebelumHook(self.cerebelum_conn_id).get_async_client()
        return self._client

    async def snapshot(self) -> dict[str, Any]:
        """Every execution in the watched states now.

        ``trusted`` is False for an empty listing that may be Core's answer to an internal
        listing error (an empty list, which must not read as "everything left"): the first
        listing of this loop, or one after a non-empty listing whose first execution reads back
        still in a watched state.

        Raises:
            CerebelumError: Core could not be asked (the loop logs it and polls again later).
            ValueError: the connection is invalid.
        """
        client = await self.client()
        polled_at = _utc_iso(datetime.now(timezone.utc))
        entries: list[dict[str, Any]] = []
        for state in self.states:
            entries.extend(await _list_entries(client, self.workflow_name, state))
        trusted = True
        if entries:
            self._previous_ids = [entry["execution_id"] for entry in entries]
        elif self._previous_ids is None:
            # Nothing to read back yet: the next empty listing in a row is believed.
            trusted, self._previous_ids = False, []
        elif self._previous_ids:
            trusted = await self._confirmed_gone(client, self._previous_ids[0])
            if trusted:
                self._previous_ids = []
        return {"api": client.api.value, "polled_at": polled_at, "trusted": trusted, "entries": entries}

    async def _confirmed_gone(self, client: ExecutionClient, execution_id: str) -> bool:
        try:
            status = await client.get_execution_status(execution_id)
        except CerebelumError as error:
            log.warning(
                "Core listed no execution in %s; %s could not be read back (%s): keeping what was seen",
                ", ".join(self.states),
                execution_id,
                error,
            )
            return False
        if status.status.value in self.states:
            log.warning(
                "Core listed no execution in %s although %s is %s (Core answers an internal listing "
                "error with an empty list): keeping what was seen",
                ", ".join(self.states),
                execution_id,
                status.status.value,
            )
            return False
        return True


class _SeenStore:
    """What a watcher has fired, in its asset's state store (Airflow 3.3) or in memory.

    The value is ``{"format", "filter", "entries"}`` where ``entries`` is the base64 of sorted
    6-byte digests of (execution id, state, entry marker): one per execution now in a watched
    state, at most ``MAX_REMEMBERED_ENTRIES``.

    Only Airflow's public accessor methods (``aget``, ``aset``) are used. They answer for a trigger
    watched by one asset; one trigger shared by several assets gets a ``ValueError`` from them
    (Airflow's public API needs the asset named, and a trigger is not told its assets' names), and
    then remembers in memory only (``unavailable_reason`` says why).
    """

    def __init__(self, store: Any, key: str, filter_description: dict[str, Any]) -> None:
        self._store = store
        self.key = key
        self._filter = filter_description
        self.unavailable_reason: str | None = None

    @property
    def persistent(self) -> bool:
        return self._store is not None

    async def load(self) -> set[bytes] | None:
        """The digests stored by an earlier run, or None when this watcher never ran (or the store
        cannot be used: then ``persistent`` turns False)."""
        try:
            value = await self._store.aget(self.key)
        except ValueError as error:
            self.unavailable_reason = str(error)
            self._store = None
            return None
        if isinstance(value, dict) and value.get("format") == _STATE_FORMAT:
            packed = base64.b64decode(value.get("entries") or "")
            return {packed[i : i + _DIGEST_BYTES] for i in range(0, len(packed), _DIGEST_BYTES)}
        return None

    async def save(self, digests: set[bytes]) -> None:
        kept = sorted(digests)[:MAX_REMEMBERED_ENTRIES]
        value = {
            "format": _STATE_FORMAT,
            "filter": self._filter,
            "entries": base64.b64encode(b"".join(kept)).decode(),
        }
        await self._store.aset(self.key, value)


class CerebelumExecutionEventTrigger(BaseEventTrigger):
    """Fire one event per Cerebelum execution that enters one of ``states``; for ``AssetWatcher``.

    Per entry: an execution that fails, is resumed and fails again fires twice. Executions
    already in ``states`` when the watcher first starts fire only with ``include_existing=True``.
    Use it as ``AssetWatcher(name=..., trigger=CerebelumExecutionEventTrigger(...))`` on an asset
    that schedules a DAG; the DAG reads the event from ``triggering_asset_events``.

    Exactly once across restarts (Airflow 3.3+): what was fired is kept in the watched asset's
    state store, one short digest per execution currently in ``states`` (at most
    ``MAX_REMEMBERED_ENTRIES``; beyond that a restart may fire the excess again, and a warning
    says so). The store is written about ``persist_grace`` seconds after the events it records,
    once the triggerer has handed them to Airflow (it does every second): a triggerer killed in
    that window fires those events again after it restarts; it never loses one. Airflow runs a
    trigger at least once: while a triggerer is late with its heartbeat (a loaded machine), another
    may start the same watcher, and the two copies may each fire an entry they both see.

    On Airflow 3.2 (no asset state store) the trigger runs, and logs one warning when it starts:
    what it has seen is in memory only, so after a triggerer restart entries that happened while
    it was down are not fired and executions already in ``states`` count as existing. It does not
    refuse to start, because event-driven scheduling is still useful without restarts.

    Args:
        cerebelum_conn_id: the Airflow connection to Core (only its id is serialized).
        workflow_name: only executions of this workflow; None for all.
        states: the states whose entry fires (enum, name or value), e.g. ``("FAILED",)``.
        poll_interval: seconds between two listings of Core's executions.
        include_existing: also fire for executions already in ``states`` at the first start.

    Raises:
        TypeError, ValueError: an argument is invalid (checked here, before anything runs).
    """

    #: Seconds between firing events and recording them in the asset state store.
    persist_grace = 2.0

    def __init__(
        self,
        cerebelum_conn_id: str = DEFAULT_CONN_ID,
        workflow_name: str | None = None,
        states: Iterable[ExecutionState | str] = ("FAILED",),
        poll_interval: float = 30,
        include_existing: bool = False,
    ) -> None:
        super().__init__()
        self.cerebelum_conn_id = check_conn_id(cerebelum_conn_id)
        self.workflow_name = (
            None if workflow_name is None else check_execution_id(workflow_name, field_name="workflow_name")
        )
        # States by name (FAILED), in a fixed order, so equal filters share one poll and one hash.
        chosen = coerce_states(states, "states", allow_unspecified=False)
        self.states = tuple(state.name for state in ExecutionState if state in chosen)
        self.poll_interval = positive_seconds(poll_interval, "poll_interval")
        self.include_existing = check_bool(include_existing, field_name="include_existing")

    def __repr__(self) -> str:
        return (
            f"CerebelumExecutionEventTrigger(cerebelum_conn_id={self.cerebelum_conn_id!r}, "
            f"workflow_name={self.workflow_name!r}, states={self.states!r}, "
            f"poll_interval={self.poll_interval})"
        )

    def serialize(self) -> tuple[str, dict[str, Any]]:
        """Return the class path and exactly the ``__init__`` arguments; holds no secret."""
        return (
            # The public path: a watcher's class path is stored with it, and outlives module moves.
            "cerebelum_provider.triggers.cerebelum.CerebelumExecutionEventTrigger",
            {
                "cerebelum_conn_id": self.cerebelum_conn_id,
                "workflow_name": self.workflow_name,
                "states": list(self.states),
                "poll_interval": self.poll_interval,
                "include_existing": self.include_existing,
            },
        )

    def shared_stream_key(self) -> Hashable | None:
        """Watchers of the same connection, workflow, states and interval share one poll."""
        return (
            "cerebelum-execution-events",
            self.cerebelum_conn_id,
            self.workflow_name,
            self.states,
            self.poll_interval,
        )

    # Seams for tests that drive a virtual clock; production uses the real one.
    @staticmethod
    async def _sleep(seconds: float) -> None:
        await asyncio.sleep(seconds)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Any]:
        """Poll Core every ``poll_interval`` and yield a snapshot of the watched executions, forever.

        A poll that fails (Core unreachable, refused, an invalid connection) is logged and tried
        again one interval later; it yields nothing, so no watcher mistakes it for an empty Core.
        """
        freeze_gc_once_if_configured()
        trigger = cls(**kwargs)
        wire_states = tuple(ExecutionState[name].value for name in trigger.states)
        poller = _Poller(trigger.cerebelum_conn_id, trigger.workflow_name, wire_states)
        while True:
            try:
                snapshot = await poller.snapshot()
            except Exception as error:  # noqa: BLE001 (a watcher outlives any failed poll)
                log.error(
                    "Cannot list Cerebelum executions in %s on connection %r: %s: %s; trying again in %ss",
                    ", ".join(trigger.states),
                    trigger.cerebelum_conn_id,
                    type(error).__name__,
                    error,
                    trigger.poll_interval,
                )
            else:
                yield snapshot
            await cls._sleep(trigger.poll_interval)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll on its own (no shared stream: Airflow 3.2, or a test) and fire entries."""
        kwargs = self.serialize()[1]
        async for event in self.filter_shared_stream(type(self).open_shared_stream(kwargs)):
            yield event

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        """Turn snapshots into one event per entry this watcher has not fired yet."""
        store = self._seen_store()
        seen = await store.load() if store.persistent else None
        if not store.persistent:
            why = store.unavailable_reason or "Airflow before 3.3, or run outside an AssetWatcher"
            self.log.warning(
                "%r has no asset state store it can use (%s): what it fires is remembered in memory only, "
                "so after a triggerer restart entries made while it was down are not fired and executions "
                "already in %s count as existing",
                self,
                why,
                ", ".join(self.states),
            )
        async for snapshot in shared_stream:
            current = {_digest(entry): entry for entry in snapshot["entries"]}
            if seen is None and not self.include_existing:
                self.log.info(
                    "First start: %d execution(s) already in %s are not fired (include_existing=False)",
                    len(current),
                    ", ".join(self.states),
                )
                seen = set(current)
                await self._save(store, seen)
                continue
            if seen and not current and not snapshot["trusted"]:
                continue
            fired = False
            for digest, entry in current.items():
                if seen is not None and digest in seen:
                    continue
                yield TriggerEvent(await self._payload(entry, snapshot))
                fired = True
            if seen != set(current):
                if fired:
                    # Give the triggerer time to hand the events to Airflow before recording them.
                    await self._sleep(min(self.persist_grace, self.poll_interval))
                seen = set(current)
                await self._save(store, seen)

    def _seen_store(self) -> _SeenStore:
        filter_description = {
            "cerebelum_conn_id": self.cerebelum_conn_id,
            "workflow_name": self.workflow_name,
            "states": list(self.states),
        }
        fingerprint = hashlib.sha256(json.dumps(filter_description, sort_keys=True).encode()).hexdigest()[:16]
        # Airflow 3.2's BaseEventTrigger has no asset_state_store attribute.
        store = getattr(self, "asset_state_store", None)
        return _SeenStore(store, f"cerebelum-execution-events-{fingerprint}", filter_description)

    async def _save(self, store: _SeenStore, seen: set[bytes]) -> None:
        if not store.persistent:
            return
        if len(seen) > MAX_REMEMBERED_ENTRIES:
            self.log.warning(
                "%d executions are in %s; only %d are remembered across restarts: after a restart the "
                "others fire again",
                len(seen),
                ", ".join(self.states),
                MAX_REMEMBERED_ENTRIES,
            )
        await store.save(seen)

    async def _payload(self, entry: dict[str, Any], snapshot: dict[str, Any]) -> dict[str, Any]:
        error_kind, error_message = entry["error_kind"], entry["error_message"]
        if error_kind is None and entry["state"] == ExecutionState.FAILED.value:
            # Core's REST list carries no error: read it from the execution's status.
            error_kind, error_message = await self._read_error(entry["execution_id"])
        return {
            "execution_id": entry["execution_id"],
            "workflow_name": entry["workflow_name"],
            "state": entry["state"],
            "error_kind": error_kind,
            "error_message": error_message,
            "seen_at": snapshot["polled_at"],
        }

    async def _read_error(self, execution_id: str) -> tuple[str | None, str | None]:
        from cerebelum_provider.hooks.cerebelum import CerebelumHook

        try:
            client = await CerebelumHook(self.cerebelum_conn_id).get_async_client()
            status = await client.get_execution_status(execution_id)
        except Exception as error:  # noqa: BLE001 (the event fires without Core's error, not never)
            self.log.warning("Could not read the error of execution %s: %s", execution_id, error)
            return None, None
        reported = status.error or {}
        return reported.get("kind"), reported.get("message")
