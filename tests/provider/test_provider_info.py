"""Provider info: valid against Airflow's schemas, found by ProvidersManager and the CLI, cheap to import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cerebelum_provider.get_provider_info import get_provider_info

AIRFLOW_PACKAGE = Path(__import__("airflow").__file__).parent


def test_matches_the_provider_info_schema():
    import jsonschema

    schema = json.loads((AIRFLOW_PACKAGE / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_connection_type_matches_the_provider_yaml_connection_schema():
    import jsonschema

    yaml_schema = json.loads((AIRFLOW_PACKAGE / "provider.yaml.schema.json").read_text())
    item_schema = yaml_schema["properties"]["connection-types"]["items"]
    (connection_type,) = get_provider_info()["connection-types"]
    jsonschema.validate(connection_type, item_schema)
    assert connection_type["connection-type"] == "cerebelum"
    assert set(connection_type["conn-fields"]) == {
        "api", "tls", "ca_cert", "client_cert", "client_key", "ca_cert_pem", "client_cert_pem",
        "client_private_key_pem", "server_name", "timeout", "max_attempts", "ui_url", "request_budget",
        "coalesce_polling",
    }
    # A new connection speaks HTTP, what the released Cores answer status queries on.
    assert connection_type["conn-fields"]["api"]["schema"]["enum"] == ["http", "grpc", None]
    assert connection_type["conn-fields"]["api"]["schema"]["default"] == "http"
    behaviour = connection_type["ui-field-behaviour"]
    assert {"schema", "login"} <= set(behaviour["hidden-fields"])
    assert behaviour["relabeling"]["password"] == "Bearer token"
    assert behaviour["placeholders"]["port"] == "4001 (HTTP) or 9090 (gRPC) when empty"


def test_every_listed_module_and_class_imports():
    import importlib

    info = get_provider_info()
    for section in ("hooks", "sensors", "triggers"):
        for entry in info[section]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    for path in [info["connection-types"][0]["hook-class-name"], *info["extra-links"]]:
        module, _, name = path.rpartition(".")
        assert getattr(importlib.import_module(module), name)


def test_providers_manager_builds_the_connection_form():
    from airflow.providers_manager import ProvidersManager
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    manager = ProvidersManager()
    assert "airflow-provider-cerebelum" in manager.providers
    hook = ProvidersManagerTaskRuntime().hooks["cerebelum"]
    assert hook.hook_class_name == "cerebelum_provider.hooks.cerebelum.CerebelumHook"
    assert hook.connection_id_attribute_name == "cerebelum_conn_id"
    widgets = manager.connection_form_widgets
    assert widgets["extra__cerebelum__client_key"].is_sensitive
    for pasted in ("ca_cert_pem", "client_cert_pem", "client_private_key_pem"):
        assert widgets[f"extra__cerebelum__{pasted}"].is_sensitive, pasted
    assert not widgets["extra__cerebelum__ca_cert"].is_sensitive
    assert widgets["extra__cerebelum__timeout"].field["value"] == 10
    behaviour = manager.field_behaviours["cerebelum"]
    assert behaviour["relabeling"]["password"] == "Bearer token"


def test_importing_provider_info_is_free():
    code = (
        "import sys; import cerebelum_provider.get_provider_info as p; p.get_provider_info();"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'grpc', 'google', 'tenacity')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.slow
def test_airflow_cli_lists_the_provider_and_its_hook(tmp_path):
    """Airflow's CLI in this virtualenv. ``make test`` runs it on the floor stage only: on the newest
    Airflow the package check asks the same of the installed wheel (scripts/check_package.py)."""
    environment = {**os.environ, "AIRFLOW_HOME": str(tmp_path)}
    environment.pop("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", None)
    airflow = [sys.executable, "-m", "airflow"]

    def cli(*args: str) -> list[dict]:
        result = subprocess.run([*airflow, *args, "-o", "json"], capture_output=True, text=True, env=environment,
                                check=True)
        # Airflow may log to stdout before the table; the JSON is the last line that starts a list.
        table = [line for line in result.stdout.splitlines() if line.startswith("[")][-1]
        return json.loads(table)

    providers = {row["package_name"]: row for row in cli("providers", "list")}
    assert providers["airflow-provider-cerebelum"]["version"] == "0.1.0"
    hooks = {row["connection_type"]: row for row in cli("providers", "hooks")}
    assert hooks["cerebelum"]["class"] == "cerebelum_provider.hooks.cerebelum.CerebelumHook"
    assert hooks["cerebelum"]["hook_name"] == "Cerebelum Core"
