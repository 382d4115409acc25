"""One asyncio client per (event loop, Core address, TLS settings, token) in the process.

A triggerer runs thousands of triggers in one event loop; if each opened its own channel, Core
would see thousands of HTTP/2 connections and handshakes. Every trigger instead asks this
registry, which hands out the same ``ExecutionClient`` (one channel) for the same settings in the
same loop. grpc.aio channels belong to the loop they were opened in, hence the per-loop key.

Each client gets a small keeper task that closes it when the loop shuts down: ``asyncio.run``
(which the triggerer and ``dag.test()`` use) cancels every remaining task before closing the
loop, and the keeper closes the channel on that cancellation.
"""

from __future__ import annotations

import asyncio
import hashlib
import weakref
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cerebelum_provider.client import ExecutionClient

_clients_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[Hashable, _Entry]] = (
    weakref.WeakKeyDictionary()
)


class _Entry:
    __slots__ = ("client", "keeper")

    def __init__(self, client: ExecutionClient, keeper: asyncio.Task[None]) -> None:
        self.client = client
        # Held here because asyncio keeps only weak references to tasks.
        self.keeper = keeper


def token_fingerprint(token: str | None) -> str | None:
    """A digest standing in for the token in registry keys, so keys never hold the secret."""
    return hashlib.sha256(token.encode()).hexdigest() if token else None


def shared_client(key: Hashable, build: Callable[[], ExecutionClient]) -> ExecutionClient:
    """Return this loop's client for ``key``, building it with ``build()`` the first time.

    Must be called from a coroutine running in the loop. No ``await`` happens between the
    lookup and the insert, so concurrent callers in one loop always get the same client.
    """
    loop = asyncio.get_running_loop()
    clients = _clients_by_loop.setdefault(loop, {})
    entry = clients.get(key)
    if entry is None:
        client = build()
        keeper = loop.create_task(
            _close_at_shutdown(loop, key, client), name=f"cerebelum-client-keeper {key!r:.40}"
        )
        entry = clients[key] = _Entry(client, keeper)
    return entry.client


def shared_client_count(loop: asyncio.AbstractEventLoop | None = None) -> int:
    """How many shared clients are open in ``loop`` (default: the running loop)."""
    loop = loop or asyncio.get_running_loop()
    return len(_clients_by_loop.get(loop, {}))


async def _close_at_shutdown(loop: asyncio.AbstractEventLoop, key: Hashable, client: ExecutionClient) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        clients = _clients_by_loop.get(loop)
        if clients is not None and clients.get(key) is not None and clients[key].client is client:
            del clients[key]
        await client.close()
