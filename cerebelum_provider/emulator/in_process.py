"""The emulator's REST app reached without sockets, for tests that are not about the wire.

:class:`InProcessHttpxTransport` is an httpx transport (blocking and async) that hands each request
to the emulator's Starlette app through ``httpx.ASGITransport``, run on the emulator's own loop,
where the engine and its faults are driven. Beneath the client's full ``AsyncHttpTransport`` or
``SyncHttpTransport`` (``CoreEmulator.client_transport()``) it gives the clients everything of
Core's REST API but the network: answers, faults, tokens, retries and the mapping of failures.
TLS, connection pools, proxies and peers are the wire's: test those against ``http_url``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Callable
from typing import Any

import httpx

#: The address in-process clients name in their errors: no host by this name is ever dialled.
IN_PROCESS_URL = "http://emulator.in-process"
#: What the app sees as the client's address (the emulator notes it among its peers).
_PEER = ("in-process", 0)


class InProcessHttpxTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """Sends httpx requests to an ASGI app on the loop ``loop()`` returns (None: not running).

    The answer's body is read on that loop and handed back as plain bytes, so both httpx clients
    can use it from any thread or loop. A request's read timeout is honoured (the app may hang, as
    the emulator's ``hang()`` makes it): it raises ``httpx.ReadTimeout`` and cancels the request.
    """

    def __init__(self, app: Any, loop: Callable[[], asyncio.AbstractEventLoop | None]) -> None:
        # An app that raises answers 500, as a server would, instead of raising into the client.
        self._asgi = httpx.ASGITransport(app, raise_app_exceptions=False, client=_PEER)
        self._loop = loop

    async def _answer(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        try:
            content = await response.aread()
        finally:
            await response.aclose()
        return httpx.Response(response.status_code, headers=response.headers, content=content)

    def _submit(self, request: httpx.Request) -> concurrent.futures.Future[httpx.Response]:
        loop = self._loop()
        if loop is None or loop.is_closed():
            raise httpx.ConnectError("the Cerebelum Core emulator is not running", request=request)
        return asyncio.run_coroutine_threadsafe(self._answer(request), loop)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.read()
        future = self._submit(request)
        try:
            return future.result(_read_timeout(request))
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise httpx.ReadTimeout("the emulator did not answer in time", request=request) from None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        future = asyncio.wrap_future(self._submit(request))
        try:
            # Cancelling the wrapper (on timeout too) cancels the request on the emulator's loop.
            return await asyncio.wait_for(future, _read_timeout(request))
        except asyncio.TimeoutError:
            raise httpx.ReadTimeout("the emulator did not answer in time", request=request) from None


def _read_timeout(request: httpx.Request) -> float | None:
    timeout = request.extensions.get("timeout", {})
    read = timeout.get("read") if isinstance(timeout, dict) else None
    return float(read) if isinstance(read, (int, float)) else None
