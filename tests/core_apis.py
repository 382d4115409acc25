"""Which of Core's APIs the running test speaks, and the emulator's address for it.

The provider tests run over one API, or both where the API matters (``core_api`` in
tests/provider/conftest.py sets it for each test). The state lives in this plain module, not in a
conftest: pytest may import a conftest under a second name, and two copies would disagree about
the current API.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

APIS = ("grpc", "http")
#: The API a provider test speaks unless it asks for both: a connection's default.
DEFAULT_API = "http"
_current = {"api": "grpc"}


def set_current_api(api: str) -> None:
    if api not in APIS:
        raise ValueError(f"api must be one of {APIS}, got {api!r}")
    _current["api"] = api


def current_api() -> str:
    return _current["api"]


def core_url(core: Any) -> str:
    """The emulator's address for a client over the current API (as the client names it too)."""
    return core.http_url if _current["api"] == "http" else core.address


def connection_uri(core: Any, token: str | None = None, **extras: Any) -> str:
    """A ``cerebelum://`` URI for the emulator ``core`` over the current API, with an optional token
    and extras."""
    credentials = f":{quote(token, safe='')}@" if token else ""
    address = core.address
    if _current["api"] == "http":
        address = f"127.0.0.1:{core.http_port}"
    extras = {"api": _current["api"], **extras}
    query = f"?{urlencode(extras)}" if extras else ""
    return f"cerebelum://{credentials}{address}{query}"
