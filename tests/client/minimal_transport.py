"""A third transport in a few dozen lines, written only against cerebelum_provider.client.transport.

It sends an operation's REST form through any httpx transport (here the emulator's in-process
one) and hands the answer to the operation's converter. No retries and no mapping of failures
beyond one error: enough for the conformance tests that are not about failures, which is the point.
"""

from __future__ import annotations

import json
from typing import TypeVar

import httpx

from cerebelum_provider.client.transport import CoreAPI, HttpAnswer, HttpCall, Operation
from cerebelum_provider.exceptions import CerebelumRPCError

T = TypeVar("T")


class _MinimalBase:
    api = CoreAPI.HTTP

    def __init__(self, address: str, token: str | None = None) -> None:
        self.address = address
        self._headers = {"authorization": f"Bearer {token}"} if token else {}

    def _request(self, call: HttpCall[T]) -> httpx.Request:
        url = httpx.URL(self.address + call.path, params=call.params)
        return httpx.Request(call.method, url, json=call.json, headers=self._headers)

    def _convert(self, operation: Operation[T], call: HttpCall[T], status: int, content: bytes) -> T:
        if status >= 500 or status in (401, 403, 429):
            raise CerebelumRPCError(
                f"{operation.name} failed at {self.address}: HTTP {status}", core_address=self.address
            )
        return call.convert(HttpAnswer(status, json.loads(content) if content else {}), self.address)


class AsyncMinimalTransport(_MinimalBase):
    def __init__(self, send: httpx.AsyncBaseTransport, address: str, token: str | None = None) -> None:
        super().__init__(address, token)
        self._send = send

    async def call(self, operation: Operation[T]) -> T:
        call = operation.http()
        response = await self._send.handle_async_request(self._request(call))
        return self._convert(operation, call, response.status_code, await response.aread())

    async def close(self) -> None:
        await self._send.aclose()


class SyncMinimalTransport(_MinimalBase):
    def __init__(self, send: httpx.BaseTransport, address: str, token: str | None = None) -> None:
        super().__init__(address, token)
        self._send = send

    def call(self, operation: Operation[T]) -> T:
        call = operation.http()
        response = self._send.handle_request(self._request(call))
        return self._convert(operation, call, response.status_code, response.read())

    def close(self) -> None:
        self._send.close()
