"""Without the OpenLineage provider the operators' lineage costs nothing: importing them (what a DAG
file does) loads no OpenLineage module, and ``get_openlineage_facets_on_complete`` answers None
without reading the connection or XCom.

The Airflow floor's lock has no OpenLineage provider, so there this runs as a user without it
would; where requirements/dev.lock installs it, a fresh interpreter refuses its import, as if it
were not installed. tests/lineage/ checks the facets with the provider.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CHECK = r"""
import importlib, importlib.abc, json, sys

def lineage_modules():
    return {m for m in sys.modules if "openlineage" in m}

# Airflow's own modules first: with the provider installed, Airflow loads its provider info itself.
importlib.import_module("airflow.sdk")
importlib.import_module("airflow.triggers.base")
before = lineage_modules()
from cerebelum_provider.operators.cerebelum import (
    CerebelumBulkResumeOperator,
    CerebelumExecuteWorkflowOperator,
    CerebelumResumeExecutionOperator,
)
added_by_import = sorted(lineage_modules() - before)
operators = [
    CerebelumExecuteWorkflowOperator(task_id="execute", workflow_name="orders", cerebelum_conn_id="nowhere"),
    CerebelumResumeExecutionOperator(task_id="resume", execution_id="e-1", cerebelum_conn_id="nowhere"),
    CerebelumBulkResumeOperator(task_id="bulk", workflow_name="orders", cerebelum_conn_id="nowhere"),
]

class NotInstalled(importlib.abc.MetaPathFinder):
    # Any OpenLineage module not loaded yet cannot be found, as when the provider is not installed.
    def find_spec(self, name, path=None, target=None):
        if "openlineage" in name:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NotInstalled())
before_calls = lineage_modules()
# A task instance whose every use fails: the answer must come before the connection or XCom is read.
answers = [operator.get_openlineage_facets_on_complete(object()) for operator in operators]
print(json.dumps({
    "added_by_import": added_by_import,
    "answers": answers,
    "added_by_calls": sorted(lineage_modules() - before_calls),
}))
"""


@pytest.mark.slow  # a fresh interpreter importing Airflow: ~10 s on a loaded 2-core machine
def test_without_the_openlineage_provider_lineage_costs_nothing(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {"added_by_import": [], "answers": [None, None, None], "added_by_calls": []}
