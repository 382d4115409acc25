"""The auth manager of the Cerebelum pages' browser test: SimpleAuthManager, except that its
``viewer`` role may read connections.

SimpleAuthManager ties every access to a connection, reading included, to the ``op`` role, which
may edit them too: none of its users can read a connection without editing it. The pages' rule
(read access shows them, edit access acts) needs such a user to be tested; this is the smallest
real auth manager that has one. Login, tokens and every other decision are SimpleAuthManager's.
"""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager


class ConnectionReaderAuthManager(SimpleAuthManager):
    """SimpleAuthManager whose viewers may read (GET) connections, and still not edit them."""

    def is_authorized_connection(self, *, method: Any, user: Any, details: Any = None) -> bool:
        if method == "GET" and (user.role or "").lower() == "viewer":
            return True
        return super().is_authorized_connection(method=method, user=user, details=details)
