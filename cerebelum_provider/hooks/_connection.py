"""Turn an Airflow connection of type ``cerebelum`` into validated client settings.

Pure Python (no grpc, no Airflow import): the hook hands it a connection object, tests and the
operators can use it directly. Extras may come from the UI form (real JSON types), from a URI
(``?tls=true&timeout=10&api=http``, every value a string) or with the legacy
``extra__cerebelum__`` prefix; all three forms parse to the same settings.

The ``api`` extra picks which of Core's APIs the connection speaks: ``http``, Core's REST API (the
default, port 4001 when none is given; ``tls`` makes it https), or ``grpc`` (port 9090 when none is
given). The CA bundle, client certificate and client key are given as file paths (``ca_cert``,
``client_cert``, ``client_key``) or pasted as PEM (``ca_cert_pem``, ``client_cert_pem``,
``client_private_key_pem``: a name Airflow masks, as it holds a secret).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

from cerebelum_provider._core import CORE_DEFAULT_GRPC_PORT, CORE_DEFAULT_HTTP_PORT, DEFAULT_CALL_TIMEOUT

#: The values of the ``api`` extra, the first being the default: the released Cores answer status
#: queries over HTTP only.
API_CHOICES = ("http", "grpc")
#: Attempts of one call (the first and its retries) when the connection sets none: the one retry
#: budget of every call a hook's client makes.
DEFAULT_MAX_ATTEMPTS = 5
MAX_MAX_ATTEMPTS = 100
#: Requests a minute the triggerer's waits on one Core stay under: below Core's per-organisation
#: limit of 1,000 (bench/RESULTS.md "Real Core"), leaving room for the Core's other clients.
DEFAULT_REQUEST_BUDGET = 900.0
#: Backoff between attempts for Airflow's tasks: 0.5, 1, 2, 4... seconds (plus up to 0.5 s of
#: jitter), at most 10, so the default budget rides out a Core restart of several seconds. One
#: call's worst case is max_attempts * timeout + the waits: 5 * 10 s + 7.5 s (+ 2 s jitter) = 59.5 s.
TASK_INITIAL_BACKOFF = 0.5
TASK_MAX_BACKOFF = 10.0

_EXTRA_PREFIX = "extra__cerebelum__"
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off", ""})
#: The pasted-PEM extras, each with the path extra it stands for and the PEM block it must hold.
PEM_EXTRAS = {
    "ca_cert_pem": ("ca_cert", "CERTIFICATE"),
    "client_cert_pem": ("client_cert", "CERTIFICATE"),
    "client_private_key_pem": ("client_key", "PRIVATE KEY"),
}
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


@dataclass(frozen=True)
class CerebelumConnectionSettings:
    """Everything needed to build a client for one Cerebelum connection.

    ``token`` is excluded from ``repr()``.
    """

    host: str
    port: int
    token: str | None = field(default=None, repr=False)
    tls: bool = False
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = None
    server_name: str | None = None
    timeout: float = DEFAULT_CALL_TIMEOUT
    ui_url: str | None = None
    api: str = API_CHOICES[0]
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    ca_cert_pem: str | None = field(default=None, repr=False)
    client_cert_pem: str | None = field(default=None, repr=False)
    client_key_pem: str | None = field(default=None, repr=False)
    #: Requests a minute the triggerer's waits on this Core stay under (Core allows 1,000).
    request_budget: float = DEFAULT_REQUEST_BUDGET
    #: Whether the triggerer's waits on this Core share their polling (False: each reads alone).
    coalesce_polling: bool = True
    #: True when the connection named no ``api`` and got the default (the hook logs it).
    api_defaulted: bool = field(default=False, compare=False)

    @property
    def address(self) -> str:
        """Core's address as the client names it: ``host:port`` (gRPC), or the REST API's base URL
        ``http(s)://host:port`` (IPv6 hosts in brackets)."""
        from cerebelum_provider.client.config import host_port, http_url

        if self.api == "http":
            return http_url(self.host, self.port, tls=self.tls)
        return host_port(self.host, self.port)

    def tls_key(self) -> tuple[Any, ...]:
        """The TLS settings as a hashable tuple (part of the shared-client key); pasted PEM is
        represented by its digest, so the key never holds the private key."""
        pems = tuple(
            hashlib.sha256(pem.encode()).hexdigest() if pem else None
            for pem in (self.ca_cert_pem, self.client_cert_pem, self.client_key_pem)
        )
        return (self.tls, self.ca_cert, self.client_cert, self.client_key, self.server_name, *pems)

    def retry_config(self) -> Any:
        """The one retry budget of a call: ``max_attempts`` attempts with the task backoff."""
        from cerebelum_provider.client.config import RetryConfig

        return RetryConfig(
            max_attempts=self.max_attempts, initial_backoff=TASK_INITIAL_BACKOFF, max_backoff=TASK_MAX_BACKOFF
        )

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ExecutionClient`` / ``SyncExecutionClient`` (besides ``retry``).

        Imports the client's option classes, so call it only when a client is about to be built.
        """
        tls: Any = False
        if self.tls:
            from cerebelum_provider.client.config import TLSConfig

            tls = TLSConfig(
                ca_cert_path=self.ca_cert,
                client_cert_path=self.client_cert,
                client_key_path=self.client_key,
                server_name_override=self.server_name,
                ca_cert_pem=self.ca_cert_pem,
                client_cert_pem=self.client_cert_pem,
                client_key_pem=self.client_key_pem,
            )
        return {"core_url": self.address, "tls": tls, "token": self.token, "timeout": self.timeout}


def _extras(connection: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    if extra is None:
        extra = connection.extra_dejson if getattr(connection, "extra", None) else {}
    if not isinstance(extra, dict):
        # A bad connection is a ValueError whatever is wrong with it: the hook's one contract.
        raise ValueError(f"connection {connection.conn_id!r}: extra must be a JSON object")  # noqa: TRY004
    merged: dict[str, Any] = {}
    for key, value in extra.items():
        merged[key.removeprefix(_EXTRA_PREFIX)] = value
    return merged


def _text(extras: dict[str, Any], name: str, conn_id: str) -> str | None:
    value = extras.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(  # noqa: TRY004 (a bad connection is a ValueError, whatever is wrong with it)
            f"connection {conn_id!r}: extra field {name!r} must be a string, got {value!r}"
        )
    return value.strip() or None


def parse_bool(value: Any, *, field_name: str) -> bool:
    """Read a boolean that may arrive as a bool, 0/1 or a word such as ``"true"``/``"false"``.

    Raises:
        ValueError: anything else, naming the field.
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE_WORDS | _FALSE_WORDS:
        return value.strip().lower() in _TRUE_WORDS
    raise ValueError(f"{field_name} must be true or false (or 1/0), got {value!r}")


def _port(connection: Any, api: str) -> int:
    raw = connection.port
    if raw is None or raw == "":
        return CORE_DEFAULT_HTTP_PORT if api == "http" else CORE_DEFAULT_GRPC_PORT
    try:
        port = int(str(raw).strip())
    except ValueError:
        raise ValueError(f"connection {connection.conn_id!r}: port must be a number, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"connection {connection.conn_id!r}: port must be in 1..65535, got {port}")
    return port


def _timeout(extras: dict[str, Any], conn_id: str) -> float:
    raw = extras.get("timeout")
    if raw is None or raw == "":
        return DEFAULT_CALL_TIMEOUT
    try:
        timeout = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        timeout = math.nan
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError(
            f"connection {conn_id!r}: extra field 'timeout' must be a number of seconds above 0, got {raw!r}"
        )
    return timeout


def _api(extras: dict[str, Any], conn_id: str) -> str:
    raw = extras.get("api")
    if raw is None or raw == "":
        return API_CHOICES[0]
    api = raw.strip().lower() if isinstance(raw, str) else raw
    if api not in API_CHOICES:
        raise ValueError(
            f"connection {conn_id!r}: extra field 'api' must be 'grpc' (Core's gRPC API) or 'http' "
            f"(Core's REST API), got {raw!r}"
        )
    return str(api)


def _max_attempts(extras: dict[str, Any], conn_id: str) -> int:
    raw = extras.get("max_attempts")
    if raw is None or raw == "":
        return DEFAULT_MAX_ATTEMPTS
    try:
        attempts = int(raw) if not isinstance(raw, bool) and float(raw) == int(float(raw)) else 0
    except (TypeError, ValueError):
        attempts = 0
    if not 1 <= attempts <= MAX_MAX_ATTEMPTS:
        raise ValueError(
            f"connection {conn_id!r}: extra field 'max_attempts' must be a whole number of attempts in "
            f"1..{MAX_MAX_ATTEMPTS}, got {raw!r}"
        )
    return attempts


def _request_budget(extras: dict[str, Any], conn_id: str) -> float:
    raw = extras.get("request_budget")
    if raw is None or raw == "":
        return DEFAULT_REQUEST_BUDGET
    try:
        budget = float(raw) if not isinstance(raw, bool) else math.nan
    except (TypeError, ValueError):
        budget = math.nan
    if not math.isfinite(budget) or budget < 1:
        raise ValueError(
            f"connection {conn_id!r}: extra field 'request_budget' must be a number of requests a minute "
            f"of at least 1 (Core allows 1000), got {raw!r}"
        )
    return budget


def _pem(extras: dict[str, Any], name: str, conn_id: str) -> str | None:
    """A pasted PEM extra, made whole again: a password box drops the line breaks of what is pasted
    into it, so each block's base64 is re-wrapped at 64 characters."""
    text = _text(extras, name, conn_id)
    if text is None:
        return None
    wanted = PEM_EXTRAS[name][1]
    blocks = [(label, re.sub(r"\s+", "", body)) for label, body in _PEM_BLOCK.findall(text)]
    if not any(label.endswith(wanted) for label, _ in blocks):
        # Never echo the value: it may be a private key.
        raise ValueError(
            f"connection {conn_id!r}: extra field {name!r} must hold a PEM block "
            f"'-----BEGIN {wanted}-----' ... '-----END {wanted}-----' ({len(text)} characters given, none "
            "such found)"
        )
    return "".join(
        f"-----BEGIN {label}-----\n"
        + "".join(body[start : start + 64] + "\n" for start in range(0, len(body), 64))
        + f"-----END {label}-----\n"
        for label, body in blocks
    )


def _host(connection: Any) -> str:
    conn_id = connection.conn_id
    host = (connection.host or "").strip()
    if not host:
        raise ValueError(f"connection {conn_id!r}: host is missing; expected Core's host name or IP address")
    if "://" in host or "/" in host or any(char.isspace() for char in host):
        raise ValueError(
            f"connection {conn_id!r}: host must be a bare host name, got {host!r} "
            "(put the port in the port field, switch TLS on with the 'tls' extra and pick the API with "
            "the 'api' extra)"
        )
    if host.startswith("[") and host.endswith("]") and host.count("]") == 1:
        host = host[1:-1]
    # One colon is host:port; an IPv6 address has at least two.
    if host.count(":") == 1 or "[" in host or "]" in host:
        raise ValueError(
            f"connection {conn_id!r}: host must be a bare host name or IP address without a port, got "
            f"{host!r}; put the port in the Port field"
        )
    return host


def _readable_file(path: str | None, name: str, conn_id: str) -> None:
    if path is not None and not (os.path.isfile(path) and os.access(path, os.R_OK)):
        raise ValueError(f"connection {conn_id!r}: extra field {name!r} names no readable file: {path!r}")


def parse_connection(connection: Any, extra: dict[str, Any] | None = None) -> CerebelumConnectionSettings:
    """Validate a ``cerebelum`` connection and return its settings.

    Args:
        connection: an Airflow ``Connection`` (anything with ``conn_id``, ``host``, ``port``,
            ``password``, ``extra`` and ``extra_dejson``).
        extra: the already decoded ``extra``; None decodes ``connection.extra_dejson`` here
            (blocking: async callers pass ``await connection.aextra_dejson()`` instead).

    Returns:
        The :class:`CerebelumConnectionSettings`.

    Raises:
        ValueError: naming the field: missing host, host carrying a scheme, path or port, port not
            a number, api neither grpc nor http, timeout not above 0, max_attempts not in 1..100,
            TLS switched off while TLS files are given, a TLS file that cannot be read, a client
            certificate without key (or the reverse), a TLS file given both as a path and as PEM,
            pasted PEM without the block it needs, a ``ui_url`` that is not an http(s) URL.
    """
    conn_id = connection.conn_id
    host = _host(connection)
    extras = _extras(connection, extra)
    api = _api(extras, conn_id)
    ca_cert = _text(extras, "ca_cert", conn_id)
    client_cert = _text(extras, "client_cert", conn_id)
    client_key = _text(extras, "client_key", conn_id)
    server_name = _text(extras, "server_name", conn_id)
    pems = {name: _pem(extras, name, conn_id) for name in PEM_EXTRAS}
    for name, (path_name, _) in PEM_EXTRAS.items():
        if pems[name] is not None and _text(extras, path_name, conn_id) is not None:
            raise ValueError(
                f"connection {conn_id!r}: give {path_name!r} (a file path) or {name!r} (pasted PEM), not both"
            )
    tls_files_given = any(
        value is not None for value in (ca_cert, client_cert, client_key, server_name, *pems.values())
    )
    if extras.get("tls") is None:
        # A CA bundle or client certificate only makes sense over TLS: never fall back to plaintext.
        tls = tls_files_given
    else:
        tls = parse_bool(extras["tls"], field_name=f"connection {conn_id!r}: extra field 'tls'")
        if not tls and tls_files_given:
            raise ValueError(
                f"connection {conn_id!r}: extra field 'tls' is false but TLS settings are given "
                "(ca_cert, client_cert, client_key or server_name); set tls to true or remove them"
            )
    has_cert = client_cert is not None or pems["client_cert_pem"] is not None
    has_key = client_key is not None or pems["client_private_key_pem"] is not None
    if has_cert != has_key:
        raise ValueError(
            f"connection {conn_id!r}: mutual TLS needs both a client certificate ('client_cert' or "
            "'client_cert_pem') and its key ('client_key' or 'client_private_key_pem'), got only the "
            f"{'certificate' if has_cert else 'key'}"
        )
    for name, path in (("ca_cert", ca_cert), ("client_cert", client_cert), ("client_key", client_key)):
        _readable_file(path, name, conn_id)
    ui_url = _text(extras, "ui_url", conn_id)
    if ui_url is not None and not ui_url.lower().startswith(("http://", "https://")):
        raise ValueError(
            f"connection {conn_id!r}: extra field 'ui_url' must be an http(s) URL template such as "
            f"'https://core.example/executions/{{execution_id}}', got {ui_url!r}"
        )
    return CerebelumConnectionSettings(
        host=host,
        port=_port(connection, api),
        token=connection.password or None,
        tls=tls,
        ca_cert=ca_cert,
        client_cert=client_cert,
        client_key=client_key,
        server_name=server_name,
        timeout=_timeout(extras, conn_id),
        ui_url=ui_url,
        api=api,
        max_attempts=_max_attempts(extras, conn_id),
        request_budget=_request_budget(extras, conn_id),
        coalesce_polling=True
        if extras.get("coalesce_polling") in (None, "")
        else parse_bool(
            extras["coalesce_polling"], field_name=f"connection {conn_id!r}: extra field 'coalesce_polling'"
        ),
        ca_cert_pem=pems["ca_cert_pem"],
        client_cert_pem=pems["client_cert_pem"],
        client_key_pem=pems["client_private_key_pem"],
        api_defaulted=extras.get("api") in (None, ""),
    )
