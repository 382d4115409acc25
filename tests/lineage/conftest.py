"""Fixtures for the OpenLineage tests: the shared Airflow home, this directory's DAG bundle.

These tests need the OpenLineage provider, which requirements/dev.lock pins and the Airflow floor's
lock does not: they live outside tests/provider, which the floor stage runs. What the operators do
without the provider is tested in tests/provider/test_openlineage_absent.py, on both.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.airflow_env import add_dag_bundles, configure_airflow_home, migrate_airflow_db

LINEAGE_DAGS = Path(__file__).parent / "dags"
configure_airflow_home()
add_dag_bundles(("lineage-tests", LINEAGE_DAGS))


@pytest.fixture(scope="session")
def airflow_db() -> Iterator[None]:
    """A migrated Airflow metadata database (SQLite in AIRFLOW_HOME), once per session."""
    migrate_airflow_db()
    yield
