"""Fixtures shared by the whole suite: a Cerebelum Core emulator on loopback.

``core`` is a started emulator with an in-memory event log and a manual clock (steps move only
on ``core.advance()``), fresh for each test; ``core_factory(**kwargs)`` starts more, with any
``CoreEmulator`` arguments, and stops them at teardown. Both start in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.airflow_env import configure_airflow_home

if TYPE_CHECKING:
    from cerebelum_provider.emulator import CoreEmulator

# This process's own Airflow home, before any test module is collected: a module that imports
# Airflow first would otherwise bind this pytest-xdist worker to its controller's home (and its
# SQLite database, which then two workers and the controller write at once).
configure_airflow_home()


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
