"""``CerebelumPlugin``: the "Cerebelum" entry in Airflow's navigation and the pages behind it.

Airflow loads it through the ``airflow.plugins`` entry point (pyproject.toml), in every Airflow
process; only the api-server serves it. So this module imports no FastAPI, Jinja2 or client: the
pages' app (``cerebelum_provider.plugins.ui``) is built on the first request it receives.

It is not listed in the provider info's ``plugins`` too: with ``[core] lazy_discover_providers``
off, Airflow would load it a second time and report the duplicate as a plugin import error.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import quote, urlparse

from airflow.sdk import conf
from airflow.sdk.plugins_manager import AirflowPlugin

#: Where the pages' app is mounted in the api-server.
URL_PREFIX = "/cerebelum"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


def base_path() -> str:
    """The path of Airflow's UI under its ``[api] base_url`` ("" when served at the root)."""
    base_url = conf.get("api", "base_url", fallback="/") or "/"
    return urlparse(base_url).path.rstrip("/")


def execution_page_url(conn_id: str, execution_id: str) -> str:
    """The URL of the execution's page: under ``[api] base_url`` when it is set, else a path on the
    host that serves Airflow's UI (which is where the UI shows a task's links)."""
    base_url = (conf.get("api", "base_url", fallback="") or "").rstrip("/")
    connection, execution = quote(conn_id, safe=""), quote(execution_id, safe="")
    return f"{base_url}{URL_PREFIX}/connections/{connection}/executions/{execution}"


class _PagesApp:
    """An ASGI app that builds the pages' FastAPI app on its first request, so that the scheduler,
    workers and DAG parsers, which load plugins too, never import FastAPI or Jinja2 for it."""

    def __init__(self) -> None:
        self._app: Callable[[Scope, Receive, Send], Awaitable[None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            from cerebelum_provider.plugins.ui import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class CerebelumPlugin(AirflowPlugin):
    """Cerebelum's executions in Airflow's UI: a dashboard, lists and each execution's page, with
    Resume, Stop and Approve, guarded by Airflow's auth manager (read or edit access to the
    connection)."""

    # Class attributes, as AirflowPlugin declares them.
    name = "cerebelum"
    fastapi_apps = [{"app": _PagesApp(), "url_prefix": URL_PREFIX, "name": "Cerebelum"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Cerebelum",
            "href": f"{base_path()}{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "cerebelum",
        }
    ]
