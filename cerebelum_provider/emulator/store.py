"""The append-only event log in SQLite (a file, or ``:memory:``).

Every batch of events is committed before the emulator answers, with the file in WAL mode, so a
process killed with SIGKILL loses nothing it acknowledged.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator

from cerebelum_provider.emulator.events import Event

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id TEXT,
    type TEXT NOT NULL,
    at REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_execution ON events (execution_id);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


class EventStore:
    """An append-only table of events; thread-safe (one connection behind a lock).

    Raises ValueError when ``path`` cannot be opened as a SQLite database.
    """

    def __init__(self, path: str | None) -> None:
        self.path = path or ":memory:"
        self._lock = threading.Lock()
        try:
            self._connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            if self.path != ":memory:":
                self._connection.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives a killed process (only a power cut loses the last commit).
                self._connection.execute("PRAGMA synchronous=NORMAL")
            self._connection.executescript(_SCHEMA)
        except sqlite3.Error as error:
            raise ValueError(f"cannot open the event log {self.path!r} as SQLite: {error}") from error

    def append(self, events: list[Event]) -> None:
        """Write events (their ``seq`` already assigned, increasing) in one committed transaction."""
        rows = [
            (event.seq, event.execution_id, event.type, event.at, json.dumps(event.data, sort_keys=True))
            for event in events
        ]
        with self._lock:
            cursor = self._connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                cursor.executemany(
                    "INSERT INTO events (seq, execution_id, type, at, data) VALUES (?, ?, ?, ?, ?)", rows
                )
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise

    def last_seq(self) -> int:
        """The highest ``seq`` in the log (0 when empty)."""
        with self._lock:
            row = self._connection.execute("SELECT MAX(seq) FROM events").fetchone()
        return row[0] or 0

    def replay(self) -> Iterator[Event]:
        """Every event in log order."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT seq, execution_id, type, at, data FROM events ORDER BY seq"
            ).fetchall()
        for seq, execution_id, event_type, at, data in rows:
            yield Event(seq, execution_id, event_type, at, json.loads(data))

    def events_of(self, execution_id: str) -> list[Event]:
        """One execution's events in log order."""
        with self._lock:
            rows = self._connection.execute(
                "SELECT seq, execution_id, type, at, data FROM events WHERE execution_id = ? ORDER BY seq",
                (execution_id,),
            ).fetchall()
        return [Event(seq, eid, event_type, at, json.loads(data)) for seq, eid, event_type, at, data in rows]

    def get_meta(self, key: str) -> str | None:
        """A value stored with :meth:`set_meta`, or None."""
        with self._lock:
            row = self._connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        """Store a small value next to the log (the manual clock's origin)."""
        with self._lock:
            self._connection.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def close(self) -> None:
        """Close the connection (a later store on the same file sees every committed event)."""
        with self._lock:
            self._connection.close()
