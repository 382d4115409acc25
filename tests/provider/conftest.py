"""Fixtures for the Airflow side: a real AIRFLOW_HOME with a SQLite metadata database.

Airflow reads AIRFLOW_HOME when it is first imported, so the shared home (tests/airflow_env.py)
is configured here at import time, before any test module of this directory imports Airflow. The
database is migrated once per session; each ``dag.test()`` makes its own DAG run in it.

A test here that talks to an emulator runs over Core's HTTP API, the one a connection speaks by
default: the hook, trigger, sensor and operator code under test is the same whichever API the
client speaks, and the client's two transports are tested over both APIs in tests/client. The
``core_api`` parameter decides what :func:`connection_uri` and :func:`core_url` point at.
``@pytest.mark.apis("grpc", "http")`` runs a test over both APIs, where what the provider does
differs between them (stopping on kill, tags, approvals, what a status carries);
``@pytest.mark.apis("grpc")`` keeps a test to gRPC, for behaviour only that API has. Either way the
test says why.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import add_dag_bundles, configure_airflow_home, migrate_airflow_db
from tests.core_apis import APIS, DEFAULT_API, connection_uri, core_url, current_api, set_current_api

__all__ = ["connection_uri", "core_url"]

#: DAG files ``dag.test()`` may run: this directory's test DAGs, then the example DAGs.
TEST_DAGS = Path(__file__).parent / "dags"
EXAMPLE_DAGS = Path(__file__).parents[2] / "example_dags"
configure_airflow_home()
add_dag_bundles(("provider-tests", TEST_DAGS), ("example-dags", EXAMPLE_DAGS))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A migrated Airflow metadata database (SQLite in AIRFLOW_HOME), once per session."""
    migrate_airflow_db()
    yield


#: Fixtures that give a test an emulator: such a test runs once per API.
_EMULATOR_FIXTURES = frozenset(
    {"core", "core_factory", "cerebelum_conn", "live_core", "still_core", "demo_core", "still_demo_core"}
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "apis(*names): run this test only over these Core APIs")
    config.addinivalue_line(
        "markers", "airflow_3_3: uses what Airflow 3.3 adds (the floor stage on 3.2 deselects it)"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "core_api" in metafunc.fixturenames and _EMULATOR_FIXTURES & set(metafunc.fixturenames):
        marker = metafunc.definition.get_closest_marker("apis")
        apis = marker.args if marker else (DEFAULT_API,)
        # CEREBELUM_TEST_APIS=grpc (or http) runs each test over one API only, e.g. on the Airflow
        # floor, where the Airflow code under test is the same whichever API the client speaks; a
        # test of the other API alone still runs, over its own.
        allowed = os.environ.get("CEREBELUM_TEST_APIS", ",".join(APIS)).split(",")
        metafunc.parametrize("core_api", [api for api in apis if api in allowed] or apis[:1], indirect=True)


@pytest.fixture(autouse=True)
def core_api(request: pytest.FixtureRequest) -> Iterator[str]:
    """The Core API this test speaks: ``grpc`` unless parametrized (tests with an emulator are)."""
    set_current_api(getattr(request, "param", "grpc"))
    yield current_api()
    set_current_api("grpc")


@pytest.fixture
def cerebelum_conn(core: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the ``cerebelum_default`` connection (an AIRFLOW_CONN_* variable) at ``core``."""
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    return "cerebelum_default"
