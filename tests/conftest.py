"""Fixtures shared by the whole suite: a Cerebelum Core emulator on loopback.

``core`` is a started emulator with an in-memory event log and a manual clock (steps move only
on ``core.advance()``), fresh for each test; ``core_factory(**kwargs)`` starts more, with any
``CoreEmulator`` arguments, and stops them at teardown. Both start in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.airflow_env import configure_airflow_home

if TYPE_CHECKING:
    from cerebelum_provider.emulator import CoreEmulator

# This process's own Airflow home, before any test module is collected: a module that imports
# Airflow first would otherwise bind this pytest-xdist worker to its controller's home (and its
# SQLite database, which then two workers and the controller write at once).
configure_airflow_home()

#: Directories whose tests take long (Airflow's dag.test(), outages waited out), handed out first.
LONG_FIRST = ("reliability", "provider", "lineage", "perf")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest first: pytest-xdist (``--dist loadgroup``) hands each worker the next test in this
    order once its own are done (groups of tests, largest first, before any single test). The
    tests that mostly wait (marked ``waits``) go first, while the machine's CPU is busy with the
    other stages, then the long directories, then the many short client and emulator tests, which
    fill the workers evenly to the end. In collection order the waits came last, and a fresh-clone
    run's main stage spent its last 90 s with a third of the cores busy, waiting on them."""
    tests = Path(__file__).resolve().parent

    def rank(item: pytest.Item) -> tuple[bool, bool]:
        try:
            top = Path(item.fspath).resolve().relative_to(tests).parts[0]
        except ValueError:  # not under tests/
            top = ""
        return item.get_closest_marker("waits") is None, top not in LONG_FIRST

    items.sort(key=rank)


@pytest.fixture
def core() -> Iterator[CoreEmulator]:
    """A started emulator: in-memory log, manual clock, accepts any workflow name."""
    from cerebelum_provider.emulator import CoreEmulator

    with CoreEmulator() as emulator:
        yield emulator


@pytest.fixture
def core_factory() -> Iterator[Callable[..., CoreEmulator]]:
    """Start more emulators: ``core_factory(token="s3cret", latency=0.05)``; all stopped at teardown."""
    from cerebelum_provider.emulator import CoreEmulator

    started: list[CoreEmulator] = []

    def factory(**kwargs: Any) -> CoreEmulator:
        emulator = CoreEmulator(**kwargs)
        started.append(emulator)
        return emulator.start()

    yield factory
    for emulator in reversed(started):
        emulator.stop()
