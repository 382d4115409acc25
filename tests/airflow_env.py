"""The Airflow environment every in-process Airflow test shares: one AIRFLOW_HOME, SQLite, DAG bundles.

Airflow reads its configuration when first imported, so each conftest that needs Airflow calls
these at its own import time, before any test module imports Airflow. Both are idempotent and
order-free: whichever test directory pytest loads first, the home is set once (unless the
caller set one) and every directory's DAG bundle ends up in the list.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

_BUNDLES_VARIABLE = "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST"


_HOME_OWNER = "CEREBELUM_TEST_AIRFLOW_HOME_PID"


def configure_airflow_home() -> None:
    """Point Airflow at a fresh temporary home with a SQLite database, unless one is set.

    A home this function made belongs to the process that made it: a pytest-xdist worker inherits
    its controller's environment, and two processes writing one SQLite database fail with
    "database is locked", so each worker makes its own. The process removes it when it exits: a
    run of the suite made ten of them (1.5 MB each), and they were left in the temporary directory.
    """
    inherited = os.environ.get(_HOME_OWNER) not in (None, str(os.getpid()))
    if "AIRFLOW_HOME" not in os.environ or inherited:
        home = tempfile.mkdtemp(prefix="cerebelum-airflow-home-")
        atexit.register(_remove_home, home, os.getpid())
        os.environ["AIRFLOW_HOME"] = home
        os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{home}/airflow.db"
        os.environ[_HOME_OWNER] = str(os.getpid())
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("AIRFLOW__CORE__UNIT_TEST_MODE", "True")


def _remove_home(home: str, owner: int) -> None:
    # A child forked from the owner that exits through sys.exit() runs the owner's atexit
    # handlers too: only the owner removes the home.
    if os.getpid() == owner:
        shutil.rmtree(home, ignore_errors=True)


def add_dag_bundles(*bundles: tuple[str, Path]) -> None:
    """Add local DAG folders, as (name, path), to the bundles ``dag.test()`` can run DAGs from.

    Each DAG file of a folder becomes a bundle of its own (``<name>-<file stem>``, a directory that
    holds a link to the file): Airflow 3.3's ``dag.test()`` parses and serializes every DAG of the
    bundle that owns the DAG it runs, on every call, and a folder of 50 test DAGs made that most of
    a ``dag.test()``'s CPU.
    """
    configured = json.loads(os.environ.get(_BUNDLES_VARIABLE) or "[]")
    known = {bundle.get("name") for bundle in configured}
    for name, folder in bundles:
        for dag_file in sorted(Path(folder).glob("*.py")):
            bundle_name = f"{name}-{dag_file.stem}"
            if dag_file.name == "__init__.py" or bundle_name in known:
                continue
            configured.append(
                {
                    "name": bundle_name,
                    "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                    "kwargs": {"path": str(_single_file_folder(dag_file)), "refresh_interval": 0},
                }
            )
    os.environ[_BUNDLES_VARIABLE] = json.dumps(configured)


def _single_file_folder(dag_file: Path) -> Path:
    """A folder holding only a link to ``dag_file`` (made once; shared by processes and stages)."""
    dag_file = dag_file.resolve()
    digest = hashlib.sha256(str(dag_file).encode()).hexdigest()[:12]
    folder = Path(tempfile.gettempdir()) / "cerebelum-dag-bundles" / f"{dag_file.stem}-{digest}"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / dag_file.name
    try:
        link.symlink_to(dag_file)
    except FileExistsError:
        pass  # made by an earlier run or another process
    return folder


_migrated: list[str] = []


def migrate_airflow_db() -> None:
    """Airflow's metadata database in this process's home, migrated once; ``dag.test()`` made cheap.

    A fresh SQLite home gets a copy of a database migrated once per Airflow install (kept in the
    temporary directory, keyed by Airflow's version and virtualenv): every pytest-xdist worker and
    stage would otherwise run the same migrations again. Any other database is migrated in place.
    """
    home = os.environ["AIRFLOW_HOME"]
    if home in _migrated:
        return
    home_db = _sqlite_path(os.environ.get("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", ""))
    from airflow import settings
    from airflow.utils.db import initdb

    if home_db is None:
        initdb()
    else:
        # Workers that start together take turns: the first migrates, the others copy its database.
        scripts = str(Path(__file__).resolve().parents[1] / "scripts")
        if scripts not in sys.path:
            sys.path.insert(0, scripts)
        from airflow_stack import copy_of_template

        def migrated() -> None:
            initdb()
            settings.engine.dispose()  # nothing of the file left in the engine when it is copied

        settings.engine.dispose()
        copy_of_template(_template_db_path(), home_db, migrated)
    _reuse_in_process_execution_api()
    _migrated.append(home)


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) and url != prefix else None


def _template_db_path() -> Path:
    from airflow import __version__ as airflow_version

    venv = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"cerebelum-airflow-db-{airflow_version}-{venv}.sqlite"


def _reuse_in_process_execution_api() -> None:
    """Build ``dag.test()``'s in-process execution API once per process, as Airflow 3.3 does.

    Airflow 3.2's ``in_process_api_server()`` builds a new FastAPI app (every versioned route of the
    execution API) and a new a2wsgi thread for every ``dag.test()``: seconds of CPU per run, which
    made the floor stage's tests take three times as long as on Airflow 3.3, where the function is
    wrapped in ``functools.lru_cache(maxsize=1)``. The same wrapping here, on 3.2 only.
    """
    from airflow.sdk.execution_time import supervisor

    if not hasattr(supervisor.in_process_api_server, "cache_info"):
        supervisor.in_process_api_server = functools.lru_cache(maxsize=1)(supervisor.in_process_api_server)
