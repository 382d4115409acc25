"""Fixtures for the Airflow side: a real AIRFLOW_HOME with a SQLite metadata database.

Airflow reads AIRFLOW_HOME when it is first imported, so it is set here at import time (before
any test module of this directory imports Airflow), unless the caller set one already. The
database is migrated once per session; each ``dag.test()`` makes its own DAG run in it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

if "AIRFLOW_HOME" not in os.environ:
    _HOME = tempfile.mkdtemp(prefix="cerebelum-airflow-home-")
    os.environ["AIRFLOW_HOME"] = _HOME
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

#: DAG files ``dag.test()`` may run: this directory's test DAGs, then the example DAGs.
TEST_DAGS = Path(__file__).parent / "dags"
EXAMPLE_DAGS = Path(__file__).parents[2] / "example_dags"
os.environ.setdefault(
    "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST",
    json.dumps(
        [
            {
                "name": name,
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(path), "refresh_interval": 0},
            }
            for name, path in (("provider-tests", TEST_DAGS), ("example-dags", EXAMPLE_DAGS))
        ]
    ),
)
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


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
