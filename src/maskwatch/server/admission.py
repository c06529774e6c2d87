"""Who may upload now: request bodies still arriving are counted apart from the work queue.

A request goes through two gates:

1. :class:`UploadSlots` while its body arrives: at most ``total`` bodies arriving at once, at most
   ``per_client`` from one client address, and at most ``memory_bytes`` of body bytes held by them
   together. A slow client (one byte a second) holds one upload slot of its own address, not a
   place in the work queue, so it cannot starve other clients: the work queue counts only requests
   whose body has arrived.
2. The work queue (:meth:`maskwatch.server.app.EnginePool.admit`): ``workers + max_queue`` requests
   whose body has arrived, waiting for or on a worker.

Both answer 503 with ``Retry-After`` when full.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterator

from maskwatch.server.uploads import UploadError


class UploadTicket:
    """One request's place among the arriving bodies; :meth:`take` counts its bytes as they arrive."""

    def __init__(self, slots: UploadSlots) -> None:
        self.slots = slots
        self.bytes = 0

    def take(self, n: int) -> None:
        """Count ``n`` more body bytes held in memory; 503 when all arriving bodies together pass the budget."""
        slots = self.slots
        if slots.bytes + n > slots.memory_bytes:
            slots.refused += 1
            raise UploadError(
                503, f"the server is busy receiving other uploads ({slots.bytes / (1 << 20):.0f} MB in flight, the "
                f"limit is {slots.memory_bytes / (1 << 20):.0f} MB); retry in a moment (see Retry-After).",
                headers={"Retry-After": "1"},
            )
        slots.bytes += n
        self.bytes += n


class UploadSlots:
    """Bodies arriving now, overall and per client address (see the module docstring)."""

    def __init__(self, total: int, per_client: int, memory_bytes: int) -> None:
        self.total = total
        self.per_client = per_client
        self.memory_bytes = memory_bytes
        self.active = 0
        self.bytes = 0
        self.by_client: Counter[str] = Counter()
        #: uploads refused because the slots or the byte budget were full
        self.refused = 0

    @contextlib.contextmanager
    def hold(self, client: str) -> Iterator[UploadTicket]:
        """A slot for one arriving body from ``client``; 503 (``Retry-After``) when none is free."""
        if self.by_client[client] >= self.per_client:
            self.refused += 1
            raise UploadError(
                503, f"{self.by_client[client]} uploads from your address are still arriving, the limit is "
                f"{self.per_client} at once (MASKWATCH_MAX_UPLOADS_PER_CLIENT); finish or close them, then retry.",
                headers={"Retry-After": "1"},
            )
        if self.active >= self.total:
            self.refused += 1
            raise UploadError(
                503, f"the server is busy: {self.active} uploads are arriving, the limit is {self.total} at once "
                "(MASKWATCH_MAX_UPLOADS); retry in a moment (see Retry-After).",
                headers={"Retry-After": "1"},
            )
        self.active += 1
        self.by_client[client] += 1
        ticket = UploadTicket(self)
        try:
            yield ticket
        finally:
            self.active -= 1
            self.bytes -= ticket.bytes
            self.by_client[client] -= 1
            if self.by_client[client] <= 0:
                del self.by_client[client]


def client_key(scope_client: tuple[str, int] | None) -> str:
    """The address a request came from (its host), ``"?"`` when the server does not know it."""
    return scope_client[0] if scope_client else "?"


__all__ = ["UploadSlots", "UploadTicket", "client_key"]
