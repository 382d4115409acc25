"""Client options and address parsing: pure Python, no grpc import.

``TLSConfig`` and ``RetryConfig`` are the small frozen option objects the clients take;
``parse_core_url`` turns what a user typed into a :class:`CoreAddress`, whose scheme picks one of
Core's two APIs (:class:`CoreAPI`); ``ClientSettings`` is the validated bundle both clients build
from their arguments.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from cerebelum_provider._arguments import check_int, shown
from cerebelum_provider._core import CORE_DEFAULT_GRPC_PORT

#: The https scheme's port, used for ``grpcs://host`` and ``https://host`` without a port.
TLS_SCHEME_DEFAULT_PORT = 443
#: The http scheme's port, used for ``http://host`` without a port (an Airflow connection names
#: Core's own, ``CORE_DEFAULT_HTTP_PORT``, instead).
HTTP_SCHEME_DEFAULT_PORT = 80


class CoreAPI(str, enum.Enum):
    """Which of Core's two APIs a client speaks; the address's scheme picks it."""

    GRPC = "grpc"
    HTTP = "http"


# scheme -> (API, TLS)
_SCHEMES = {
    "grpc": (CoreAPI.GRPC, False),
    "grpcs": (CoreAPI.GRPC, True),
    "http": (CoreAPI.HTTP, False),
    "https": (CoreAPI.HTTP, True),
}
_EXPECTED_FORMS = (
    "'host:port', 'grpc://host:port', 'grpcs://host:port', 'http://host:port' or 'https://host:port'"
)


@dataclass(frozen=True)
class TLSConfig:
    """TLS options for the channel to Core; ``TLSConfig()`` trusts the system roots.

    Each of the CA bundle, the client certificate and the client key is given either as a path or
    as PEM (``str`` or ``bytes``), not both. Paths are read once, when the client is built, so a
    wrong path fails at construction. The PEM of the client key never shows in ``repr()``.
    """

    ca_cert_path: str | None = None
    client_cert_path: str | None = None
    client_key_path: str | None = None
    server_name_override: str | None = None
    ca_cert_pem: str | bytes | None = None
    client_cert_pem: str | bytes | None = None
    client_key_pem: str | bytes | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for name in ("ca_cert_path", "client_cert_path", "client_key_path", "server_name_override"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise TypeError(f"TLSConfig.{name} must be a non-empty string or None, got {value!r}")
        for name in ("ca_cert_pem", "client_cert_pem", "client_key_pem"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, (str, bytes)) or not value.strip()):
                # Never echo PEM: the client key's is a secret.
                raise TypeError(f"TLSConfig.{name} must be non-empty PEM (str or bytes) or None")
        for what in ("ca_cert", "client_cert", "client_key"):
            if getattr(self, f"{what}_path") is not None and getattr(self, f"{what}_pem") is not None:
                raise ValueError(f"TLSConfig takes {what}_path or {what}_pem, not both")
        has_cert = self.client_cert_path is not None or self.client_cert_pem is not None
        has_key = self.client_key_path is not None or self.client_key_pem is not None
        if has_cert != has_key:
            raise ValueError(
                "TLSConfig needs both a client certificate (client_cert_path or client_cert_pem) and its "
                "key (client_key_path or client_key_pem) for mutual TLS, got only the "
                f"{'certificate' if has_cert else 'key'}"
            )


@dataclass(frozen=True)
class RetryConfig:
    """Retries of transient failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, CANCELLED).

    ``max_attempts`` counts the first call too, so 1 disables retries. The wait before retry
    ``n`` is ``initial_backoff * multiplier ** (n - 1)`` plus jitter, capped at ``max_backoff``.
    """

    max_attempts: int = 5
    initial_backoff: float = 0.1
    max_backoff: float = 5.0
    multiplier: float = 2.0

    def __post_init__(self) -> None:
        check_int(self.max_attempts, field_name="RetryConfig.max_attempts", minimum=1)
        for name in ("initial_backoff", "max_backoff"):
            _require_number(f"RetryConfig.{name}", getattr(self, name), minimum=0.0)
        _require_number("RetryConfig.multiplier", self.multiplier, minimum=1.0)


@dataclass(frozen=True)
class CoreAddress:
    """Where Core is and which API to speak there.

    ``target`` is the ``host:port`` string gRPC dials; ``base_url`` is the root of Core's REST API
    (``http(s)://host:port`` plus an optional path prefix, for Core behind a gateway).
    """

    host: str
    port: int
    tls: bool | None  # True for grpcs:// and https://, False for grpc:// and http://, None: no scheme
    api: CoreAPI = CoreAPI.GRPC
    base_path: str = ""  # only for the HTTP API: "/prefix" without a trailing slash

    @property
    def target(self) -> str:
        return host_port(self.host, self.port)

    @property
    def base_url(self) -> str:
        return http_url(self.host, self.port, tls=bool(self.tls)) + self.base_path

    @property
    def display(self) -> str:
        """How errors and logs name this Core: ``host:port`` for gRPC, the base URL for HTTP."""
        return self.base_url if self.api is CoreAPI.HTTP else self.target


def host_port(host: str, port: int) -> str:
    """``host:port`` as gRPC dials it and a URL writes it: the one place an IPv6 host gets brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def http_url(host: str, port: int, *, tls: bool) -> str:
    """``http(s)://host:port``: the root of a REST API (Core's, or the emulator's)."""
    return f"{'https' if tls else 'http'}://{host_port(host, port)}"


def parse_core_url(core_url: str) -> CoreAddress:
    """Parse ``host:port``, ``grpc(s)://host:port`` (gRPC) or ``http(s)://host:port`` (REST).

    The scheme picks the API: ``http``/``https`` speak Core's REST API, everything else gRPC.
    Without a port, ``grpcs://`` and ``https://`` mean 443, ``http://`` 80, the others Core's
    default 9090. Only an HTTP address may carry a path (a gateway's prefix, e.g.
    ``https://gw.example.com/cerebelum``).

    Returns:
        The parsed :class:`CoreAddress`.

    Raises:
        TypeError: ``core_url`` is not a string.
        ValueError: the scheme is unknown, the host is missing, the port is not a number in
            1..65535, or the URL carries a query, fragment, credentials, or (gRPC) a path.
    """
    if not isinstance(core_url, str):
        raise TypeError(
            f"core_url must be a string like 'host:9090', got {type(core_url).__name__} {core_url!r}"
        )
    text = core_url.strip()
    if not text or any(char.isspace() for char in text):
        raise ValueError(f"core_url={core_url!r} must be {_EXPECTED_FORMS}")
    scheme_tls: bool | None = None
    api = CoreAPI.GRPC
    rest = text
    if "://" in text:
        scheme, rest = text.split("://", 1)
        if scheme.lower() not in _SCHEMES:
            raise ValueError(
                f"core_url={core_url!r} has unknown scheme {scheme!r}; expected grpc:// or grpcs:// "
                "(Core's gRPC API), http:// or https:// (Core's REST API), or no scheme (gRPC)"
            )
        api, scheme_tls = _SCHEMES[scheme.lower()]
    parts = urlsplit("//" + rest)
    base_path = parts.path.rstrip("/")
    if parts.query or parts.fragment or (base_path and api is not CoreAPI.HTTP):
        allowed = (
            "a path prefix but no query or fragment" if api is CoreAPI.HTTP else "no path, query or fragment"
        )
        raise ValueError(f"core_url={core_url!r} must carry {allowed}; expected {_EXPECTED_FORMS}")
    if parts.username is not None or parts.password is not None:
        # A token belongs in the token argument, never in an address that ends up in messages.
        raise ValueError("core_url must not carry credentials; pass the token as token=...")
    host = parts.hostname
    if not host:
        raise ValueError(f"core_url={core_url!r} names no host; expected {_EXPECTED_FORMS}")
    try:
        port = parts.port
    except ValueError:
        raw_port = parts.netloc.rsplit(":", 1)[-1]
        raise ValueError(
            f"core_url={core_url!r} has port {raw_port!r}; expected a number in 1..65535"
        ) from None
    if port is None:
        if parts.netloc.endswith(":"):
            raise ValueError(f"core_url={core_url!r} has an empty port; expected a number in 1..65535")
        if scheme_tls:
            port = TLS_SCHEME_DEFAULT_PORT
        else:
            port = HTTP_SCHEME_DEFAULT_PORT if api is CoreAPI.HTTP else CORE_DEFAULT_GRPC_PORT
    if not 1 <= port <= 65535:
        raise ValueError(f"core_url={core_url!r} has port {port}; expected a number in 1..65535")
    return CoreAddress(host=host, port=port, tls=scheme_tls, api=api, base_path=base_path)


@dataclass(frozen=True)
class ClientSettings:
    """Everything a client was built with, validated; the token never shows in ``repr()``."""

    address: CoreAddress
    tls: TLSConfig | None
    timeout: float
    retry: RetryConfig
    token: str | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        core_url: str,
        *,
        tls: bool | TLSConfig | None,
        token: str | None,
        timeout: float,
        retry: RetryConfig | None,
    ) -> ClientSettings:
        """Validate the client's constructor arguments.

        Raises:
            TypeError, ValueError: an argument has the wrong type or value; the message names it.
        """
        address = parse_core_url(core_url)
        tls_config = _resolve_tls(core_url, address, tls)
        _require_number("timeout", timeout, minimum=0.0, exclusive=True)
        if token is not None and not isinstance(token, str):
            raise TypeError(f"token must be a string or None, got {type(token).__name__}")
        if token is not None and (not token or token != token.strip() or "\n" in token):
            # Never echo the token itself: it is a secret even when malformed.
            raise ValueError("token must be a non-empty string without surrounding whitespace or newlines")
        if retry is None:
            retry = RetryConfig()
        elif not isinstance(retry, RetryConfig):
            raise TypeError(f"retry must be a RetryConfig or None, got {type(retry).__name__} {shown(retry)}")
        return cls(address=address, tls=tls_config, timeout=float(timeout), retry=retry, token=token or None)


def _resolve_tls(core_url: str, address: CoreAddress, tls: bool | TLSConfig | None) -> TLSConfig | None:
    if tls is None:
        return TLSConfig() if address.tls else None
    if isinstance(tls, bool):
        wanted: TLSConfig | None = TLSConfig() if tls else None
    elif isinstance(tls, TLSConfig):
        wanted = tls
    else:
        raise TypeError(f"tls must be a bool, a TLSConfig or None, got {type(tls).__name__} {shown(tls)}")
    if address.tls is not None and address.tls != (wanted is not None):
        raise ValueError(
            f"core_url={core_url!r} says {'TLS' if address.tls else 'plaintext'} but tls={tls!r} says "
            "otherwise; use grpcs:// or https:// for TLS, grpc:// or http:// for plaintext, or give no scheme"
        )
    return wanted


def _require_number(name: str, value: object, *, minimum: float, exclusive: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {shown(value)}")
    too_small = value <= minimum if exclusive else value < minimum
    if math.isnan(value) or math.isinf(value) or too_small:
        bound = f"greater than {minimum}" if exclusive else f"at least {minimum}"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
