"""The Airflow environment every in-process Airflow test shares: one AIRFLOW_HOME, SQLite, DAG bundles.

Airflow reads its configuration when first imported, so each conftest that needs Airflow calls
these at its own import time, before any test module imports Airflow. Both are idempotent and
order-free: whichever test directory pytest loads first, the home is set once (unless the
caller set one) and every directory's DAG bundle ends up in the list.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

_BUNDLES_VARIABLE = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"


_HOME_OWNER = "CEREBELUM_TEST_AIRFLOW_HOME_PID"


def configure_airflow_home() -> None:
    """Point Airflow at a fresh temporary home with a SQLite database, unless one is set.

    A home this function made belongs to the process that made it: a pytest-xdist worker inherits
    its controller's environment, and two processes writing one SQLite database fail with
    "database is locked", so each worker makes its own.
    """
    inherited = os.environ.get(_HOME_OWNER) not in (None, str(os.getpid()))
    if "AIRFLOW_HOME" not in os.environ or inherited:
        home = tempfile.mkdtemp(prefix="cerebelum-airflow-home-")
        os.environ["AIRFLOW_HOME"] = home
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
        os.environ[_HOME_OWNER] = str(os.getpid())
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


def add_dag_bundles(*bundles: tuple[str, Path]) -> None:
    """Add local DAG folders, as (name, path), to the bundles ``dag.test()`` can run DAGs from."""
    configured = json.loads(os.environ.get(_BUNDLES_VARIABLE) or "[]")
    known = {bundle.get("name") for bundle in configured}
    for name, path in bundles:
        if name not in known:
            configured.append(
                {
                    "name": name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(path), "refresh_interval": 0},
                }
            )
    os.environ[_BUNDLES_VARIABLE] = json.dumps(configured)
