"""Writing settled calls to the store in groups.

Each call's trace, its agent's new spend and its scopes' window spend must be on disk
before the agent receives the end of its answer (a daemon killed a moment later loses
nothing). Committing each call on its own
costs a handful of database-thread round trips per call and serialises concurrent calls
behind one another; instead one writer drains whatever has settled meanwhile and commits
it in one transaction, and every call waits only for the commit that holds it.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from dataclasses import dataclass, field

import anyio

from ironrt.ledger import Scope
from ironrt.protocol import Trace
from ironrt.router.governance import AgentGovernance
from ironrt.store import scopes as scope_store
from ironrt.store import traces as trace_store
from ironrt.store.db import Database
from ironrt.store.writer import BatchWriter

log = logging.getLogger("ironrt.router")

_MAX_BATCH = 512
_UPDATE_SPEND = "UPDATE agents SET spent_usd = ? WHERE id = ?"


@dataclass(slots=True)
class _Settled:
    trace: Trace
    gov: AgentGovernance
    scopes: tuple[Scope, ...]
    done: anyio.Event = field(default_factory=anyio.Event)
    ok: bool = False


class Recorder:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer: BatchWriter | None = None
        self._send, self._receive = anyio.create_memory_object_stream[_Settled](math.inf)

    async def record(self, trace: Trace, gov: AgentGovernance, scopes: tuple[Scope, ...]) -> bool:
        """Queue one settled call and wait for its commit; False if it could not be written.

        Spend is read when the batch commits, not when the call is queued: the values
        written are the latest (they only grow within a window), together with the window
        they belong to.
        """
        item = _Settled(trace, gov, scopes)
        self._send.send_nowait(item)
        await item.done.wait()
        return item.ok

    async def run(self) -> None:
        if self.db.path is not None:
            self._writer = BatchWriter.open(self.db.path)
        try:
            await self._drain()
        finally:
            if self._writer is not None:
                self._writer.close()

    async def _drain(self) -> None:
        async with self._receive:
            async for first in self._receive:
                batch = [first]
                while len(batch) < _MAX_BATCH:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except anyio.WouldBlock:
                        break
                with anyio.CancelScope(shield=True):
                    await self._commit(batch)

    async def _commit(self, batch: list[_Settled]) -> None:
        insert_sql = trace_store.insert_statement(batch[0].trace)[0]
        spend = {item.gov.agent_id: item.gov.spent_usd for item in batch}
        scopes = {s.key: s for item in batch for s in item.scopes}
        write = self._writer.write_many if self._writer is not None else self.db.write_many
        try:
            await write(
                [
                    (insert_sql, [trace_store.insert_statement(i.trace)[1] for i in batch]),
                    (_UPDATE_SPEND, [(total, agent_id) for agent_id, total in spend.items()]),
                    (scope_store.SPEND_SQL, [scope_store.spend_params(s) for s in scopes.values()]),
                ]
            )
            ok = True
        except sqlite3.Error as exc:
            # Disk full, say. The spend stays counted in memory (the budget still holds) and
            # the agent row is rewritten with the running total by the next commit.
            log.error("could not record %d calls: %s", len(batch), exc)
            ok = False
        for item in batch:
            item.ok = ok
            item.done.set()

    def close(self) -> None:
        self._send.close()
