"""Fixtures for the Airflow side: a real AIRFLOW_HOME with a SQLite metadata database.

Airflow reads AIRFLOW_HOME when it is first imported, so the shared home (tests/airflow_env.py)
is configured here at import time, before any test module of this directory imports Airflow. The
database is migrated once per session; each ``dag.test()`` makes its own DAG run in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.airflow_env import add_dag_bundles, configure_airflow_home

#: DAG files ``dag.test()`` may run: this directory's test DAGs, then the example DAGs.
TEST_DAGS = Path(__file__).parent / "dags"
EXAMPLE_DAGS = Path(__file__).parents[2] / "example_dags"
configure_airflow_home()
add_dag_bundles(("provider-tests", TEST_DAGS), ("example-dags", EXAMPLE_DAGS))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A migrated Airflow metadata database (SQLite in AIRFLOW_HOME), once per session."""
    from airflow.utils.db import initdb

    initdb()
    yield


def connection_uri(core: Any, token: str | None = None, **extras: Any) -> str:
    """A ``cerebelum://`` URI for the emulator ``core`` with optional token and extras."""
    from urllib.parse import quote, urlencode

    credentials = f":{quote(token, safe='')}@" if token else ""
    query = f"?{urlencode(extras)}" if extras else ""
    return f"cerebelum://{credentials}{core.address}{query}"


@pytest.fixture
def cerebelum_conn(core: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the ``cerebelum_default`` connection (an AIRFLOW_CONN_* variable) at ``core``."""
    monkeypatch.setenv("AIRFLOW_CONN_CEREBELUM_DEFAULT", connection_uri(core))
    return "cerebelum_default"
