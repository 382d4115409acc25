"""Fixtures for the reliability and security tests: an Airflow home, TLS material, connections.

Airflow reads AIRFLOW_HOME when it is first imported, so it is set here at import time unless
another conftest (tests/provider) or the caller set one already. This directory's DAG file is
added to the DAG bundles Airflow knows, whichever conftest set the list first: ``dag.test()``
only runs DAGs it can find in a bundle.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import pytest

if "AIRFLOW_HOME" not in os.environ:
    _HOME = tempfile.mkdtemp(prefix="cerebelum-airflow-home-")
    os.environ["AIRFLOW_HOME"] = _HOME
    os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{_HOME}/airflow.db"
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")

RELIABILITY_DAGS = Path(__file__).parent / "dags"
_BUNDLES_VARIABLE = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"
_bundles = json.loads(os.environ.get(_BUNDLES_VARIABLE) or "[]")
if not any(bundle.get("name") == "reliability-tests" for bundle in _bundles):
    _bundles.append(
        {
            "name": "reliability-tests",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {"path": str(RELIABILITY_DAGS), "refresh_interval": 0},
        }
    )
    os.environ[_BUNDLES_VARIABLE] = json.dumps(_bundles)


@pytest.fixture(scope="session")
def migrated_airflow_db() -> Iterator[Path]:
    """A migrated Airflow metadata database; yields AIRFLOW_HOME."""
    from airflow.utils.db import initdb

    initdb()
    yield Path(os.environ["AIRFLOW_HOME"])


def connection_uri(address: str, token: str | None = None, **extras: Any) -> str:
    """A ``cerebelum://`` URI for Core at ``address`` with an optional token and extras."""
    credentials = f":{quote(token, safe='')}@" if token else ""
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
