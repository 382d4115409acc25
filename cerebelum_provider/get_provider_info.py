"""Provider metadata that Airflow reads through the ``apache_airflow_provider`` entry point.

Airflow calls :func:`get_provider_info` for every installed provider when it lists providers,
builds connection forms or resolves hooks, so this module imports nothing but the package
version. The connection form is declared here (``conn-fields`` and ``ui-field-behaviour``, the
Airflow 3.2+ form), so the UI never has to import the hook to draw it.
"""

from __future__ import annotations

from typing import Any

from cerebelum_provider._version import __version__

_HOOK_CLASS = "cerebelum_provider.hooks.cerebelum.CerebelumHook"

#: Fields kept in the connection's ``extra`` JSON; the hook reads exactly these keys.
CONNECTION_FIELDS: dict[str, dict[str, Any]] = {
    "api": {
        "label": "Core API",
        "description": (
            "http: Core's REST API (port 4001 by default), which the released Cores need for status "
            "queries and which alone can stop and approve. grpc: Core's gRPC API (port 9090 by default)."
        ),
        "schema": {"type": ["string", "null"], "enum": ["http", "grpc", None], "default": "http"},
    },
    "tls": {
        "label": "Use TLS",
        "description": (
            "Connect over TLS (grpcs, or https for the REST API). Turned on by itself when a CA bundle "
            "or client certificate is set."
        ),
        "schema": {"type": ["boolean", "null"], "default": False},
    },
    "ca_cert": {
        "label": "CA bundle path",
        "description": (
            "PEM file with the CA certificates that signed Core's certificate (empty: system roots)."
        ),
        "schema": {"type": ["string", "null"]},
    },
    "client_cert": {
        "label": "Client certificate path",
        "description": "PEM client certificate for mutual TLS; needs the client key too.",
        "schema": {"type": ["string", "null"]},
    },
    "client_key": {
        "label": "Client key path",
        "description": "PEM private key of the client certificate, as a file path.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "ca_cert_pem": {
        "label": "CA bundle (pasted PEM)",
        "description": (
            "The CA certificates themselves, pasted (-----BEGIN CERTIFICATE----- ...), instead of a path: "
            "nothing to copy to every worker, triggerer and api-server."
        ),
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "client_cert_pem": {
        "label": "Client certificate (pasted PEM)",
        "description": "The client certificate itself, pasted, instead of a path; needs the client key too.",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "client_private_key_pem": {
        "label": "Client key (pasted PEM)",
        "description": "The client certificate's private key itself, pasted (-----BEGIN PRIVATE KEY-----).",
        "schema": {"type": ["string", "null"], "format": "password"},
    },
    "server_name": {
        "label": "TLS server name override",
        "description": "Name to check Core's certificate against when it differs from the host.",
        "schema": {"type": ["string", "null"]},
    },
    "timeout": {
        "label": "Call timeout (seconds)",
        "description": "Deadline of each call to Core, before retries.",
        "schema": {"type": ["number", "null"], "default": 10, "minimum": 0.001},
    },
    "max_attempts": {
        "label": "Attempts per call",
        "description": (
            "Tries of one call to Core while it is unreachable or overloaded (the first one included), "
            "0.5 s apart and doubling, at most 10 s: the one retry budget of every call. 5 by default."
        ),
        "schema": {"type": ["integer", "null"], "default": 5, "minimum": 1, "maximum": 100},
    },
    "request_budget": {
        "label": "Request budget (requests a minute)",
        "description": (
            "Requests a minute the triggerer's waits on this Core stay under, by stretching their poll "
            "interval evenly (Core refuses an organisation's requests past 1,000 a minute). 900 by default."
        ),
        "schema": {"type": ["number", "null"], "default": 900, "minimum": 1},
    },
    "coalesce_polling": {
        "label": "Share polling between waits",
        "description": (
            "The triggerer's waits on executions of one workflow are answered by one listing of Core's "
            "executions (pages of 100) where that costs fewer requests; off: each wait reads its own."
        ),
        "schema": {"type": ["boolean", "null"], "default": True},
    },
    "ui_url": {
        "label": "Execution URL template",
        "description": (
            "Link shown on tasks, e.g. https://core.example/executions/{execution_id}; empty: the "
            "execution's page in Airflow's Cerebelum pages"
        ),
        "schema": {"type": ["string", "null"]},
    },
}


def get_provider_info() -> dict[str, Any]:
    """Return the provider description Airflow's ProvidersManager expects (provider_info schema)."""
    return {
        "package-name": "airflow-provider-cerebelum",
        "name": "Cerebelum",
        "description": "Wait on, start and resume Cerebelum Core workflow executions from Airflow.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "Cerebelum Core",
                "external-doc-url": "https://github.com/cerebelum-io/cerebelum-core",
                "tags": ["service"],
            }
        ],
        "hooks": [
            {"integration-name": "Cerebelum Core", "python-modules": ["cerebelum_provider.hooks.cerebelum"]}
        ],
        "sensors": [
            {"integration-name": "Cerebelum Core", "python-modules": ["cerebelum_provider.sensors.cerebelum"]}
        ],
        "operators": [
            {
                "integration-name": "Cerebelum Core",
                "python-modules": [
                    "cerebelum_provider.operators.cerebelum",
                    "cerebelum_provider.operators.approval",
                ],
            }
        ],
        "triggers": [
            {
                "integration-name": "Cerebelum Core",
                "python-modules": ["cerebelum_provider.triggers.cerebelum"],
            }
        ],
        "connection-types": [
            {
                "hook-class-name": _HOOK_CLASS,
                "hook-name": "Cerebelum Core",
                "connection-type": "cerebelum",
                "conn-fields": CONNECTION_FIELDS,
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "extra"],
                    "relabeling": {"host": "Core host", "port": "Core port", "password": "Bearer token"},
                    "placeholders": {
                        "host": "core.example.com",
                        "port": "4001 (HTTP) or 9090 (gRPC) when empty",
                        "password": "token sent as 'Authorization: Bearer <token>' (needed by the REST API)",
                    },
                },
            }
        ],
        "extra-links": ["cerebelum_provider.links.cerebelum.CerebelumExecutionLink"],
        "config": {
            "cerebelum": {
                "description": "Settings of the Cerebelum provider.",
                "options": {
                    "triggerer_gc_freeze": {
                        "description": (
                            "Call gc.freeze() once, when the first Cerebelum trigger starts in a triggerer "
                            "process: full garbage collections then skip the objects Airflow and the "
                            "providers loaded, which shortens the worst event-loop stall of many polling "
                            "triggers (see bench/RESULTS.md). It is process-wide (it affects every "
                            "trigger of that triggerer), hence off by default."
                        ),
                        "version_added": "0.1.0",
                        "type": "boolean",
                        "example": "True",
                        "default": "False",
                    }
                },
            }
        },
    }
