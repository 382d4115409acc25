"""Fixtures for the reliability and security tests: an Airflow home, TLS material, connections.

Airflow reads AIRFLOW_HOME when it is first imported, so the shared home (tests/airflow_env.py)
is configured here at import time, and this directory's DAG file added to the DAG bundles:
``dag.test()`` only runs DAGs it can find in a bundle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.airflow_env import add_dag_bundles, configure_airflow_home, migrate_airflow_db

RELIABILITY_DAGS = Path(__file__).parent / "dags"
configure_airflow_home()
add_dag_bundles(("reliability-tests", RELIABILITY_DAGS))


@pytest.fixture(scope="session")
def migrated_airflow_db() -> Iterator[Path]:
    """A migrated Airflow metadata database; yields AIRFLOW_HOME."""
    migrate_airflow_db()
    yield Path(os.environ["AIRFLOW_HOME"])


def connection_uri(address: str, token: str | None = None, **extras: Any) -> str:
    """A ``cerebelum://`` URI for Core at ``address`` (gRPC unless ``api`` says otherwise) with an
    optional token and extras."""
    credentials = f":{quote(token, safe='')}@" if token else ""
    extras = {"api": "grpc", **extras}
    query = f"?{urlencode(extras)}" if extras else ""
    return f"cerebelum://{credentials}{address}{query}"


@pytest.fixture
def set_connection(monkeypatch: pytest.MonkeyPatch) -> Callable[..., str]:
    """``set_connection(address, token=None, conn_id="cerebelum_default", **extras)`` -> conn_id.

    The connection lives in an ``AIRFLOW_CONN_*`` variable, as in a deployment using env secrets.
    """

    def set_(address: str, token: str | None = None, conn_id: str = "cerebelum_default", **extras: Any) -> str:
        monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", connection_uri(address, token, **extras))
        return conn_id

    return set_


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory):
    """A CA, another CA, server and client certificates generated for this run (tests/client helper)."""
    from tests.client.tls_material import write_tls_files

    return write_tls_files(tmp_path_factory.mktemp("reliability-tls"))
