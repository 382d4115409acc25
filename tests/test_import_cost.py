"""Importing the provider's Airflow modules (what a DAG file does at parse time) loads no grpc,
protobuf or tenacity of its own: the client is imported on first use. Counts modules in a fresh
interpreter; bench/bench_import_time.py measures the time."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("grpc", "google.protobuf", "tenacity")
PROVIDER_MODULES = (
    "cerebelum_provider.sensors.cerebelum",
    "cerebelum_provider.operators.cerebelum",
    "cerebelum_provider.triggers.cerebelum",
    "cerebelum_provider.hooks.cerebelum",
    "cerebelum_provider.links.cerebelum",
    "cerebelum_provider.plugins.cerebelum",  # every Airflow process loads the plugin
)


def heavy_modules_added(modules: tuple[str, ...], baseline: tuple[str, ...]) -> dict:
    """In a fresh interpreter import ``baseline``, then each of ``modules`` in turn; report the
    heavy modules present after the baseline and those each module added."""
    code = f"""
import importlib, json, sys
heavy = {HEAVY!r}
def loaded():
    return {{m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy)}}
for name in {baseline!r}:
    importlib.import_module(name)
report = {{"baseline": sorted(loaded()), "added": {{}}}}
for name in {modules!r}:
    before = loaded()
    importlib.import_module(name)
    report["added"][name] = sorted(loaded() - before)
print(json.dumps(report))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow  # a fresh interpreter importing Airflow: ~10 s on a loaded 2-core machine
def test_provider_modules_import_no_grpc_protobuf_or_tenacity():
    # Airflow's own modules come first: airflow.sdk already loads tenacity (not grpc or protobuf),
    # so what counts is what the provider's modules add on top.
    report = heavy_modules_added(PROVIDER_MODULES, baseline=("airflow.sdk", "airflow.triggers.base"))
    assert report["added"] == {name: [] for name in PROVIDER_MODULES}
    grpc_or_protobuf = ("grpc", "grpc.", "google.protobuf")
    assert not [name for name in report["baseline"] if name.startswith(grpc_or_protobuf)]


def test_the_client_does_load_grpc_so_the_check_can_fail():
    report = heavy_modules_added(("cerebelum_provider.client",), baseline=())
    added = report["added"]["cerebelum_provider.client"]
    assert {"grpc", "google.protobuf", "tenacity"} <= set(added)
