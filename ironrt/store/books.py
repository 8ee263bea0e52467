"""The one writer of the books: settled calls, spend and scope changes, in order, in groups.

Each call's trace, its agent's spend and its scopes' window spend must be on disk before
the agent receives the end of its answer (a daemon killed a moment later loses nothing).
Committing each call on its own costs round trips and serialises concurrent calls; instead
one writer drains whatever has been queued meanwhile and commits it in one transaction,
and every caller waits only for the commit that holds its write.

Each trace is queued with the upserts of its hour's and its day's usage rollups
(`usage_hourly`, `usage_daily`), so the three always commit together.

Everything that writes money goes through this queue: settled calls, limit changes,
window resets and removed scopes. Each write carries a snapshot taken when it was queued,
and writes commit in queue order, so what is on disk is always the books as they were at
one moment: the agent's spend equals the sum of its committed traces, and a scope's
window spend is never ahead of (nor behind) the calls that made it. (The daemon's other
writes, agent lifecycle rows, never touch a spend column.)

In the daemon the books keep a journal (`ironrt.store.journal`): each write is appended to
it, one `os.write`, and the caller goes on at once; SQLite is committed behind the
answers by one committer task, in groups, and every commit records the last journal
record it holds. A daemon killed at any moment replays the rest at its next start. Reads
of the database wait until SQLite holds everything queued before them
(`drain`: the daemon makes every read of the database await it, `Database.before_read`),
so what the control API shows is never behind the answers.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from ironrt.errors import JournalReplayFailed
from ironrt.governance.ledger import Scope
from ironrt.protocol import Trace
from ironrt.store import scopes as scope_store
from ironrt.store import traces as trace_store
from ironrt.store.db import Database
from ironrt.store.journal import Journal, read_records
from ironrt.store.watermark import Watermark
from ironrt.store.writer import BatchWriter, LoopLoad

log = logging.getLogger("ironrt.store")

_MAX_BATCH = 512
_UPDATE_SPEND = "UPDATE agents SET spent_usd = ? WHERE id = ?"
_DELETE_SCOPE = "DELETE FROM scopes WHERE scope = ?"
#: The last journal record SQLite holds: written by every commit of the books.
_SEQ_KEY = "books_journal_seq"
_SET_SEQ = (
    "INSERT INTO meta(key, value) VALUES ('books_journal_seq', ?) "
    "ON CONFLICT(key) DO UPDATE SET value = excluded.value"
)
#: The journal is emptied once SQLite holds all of it and it has grown past this.
_EMPTY_AT = 1024 * 1024
#: Past this much journal not yet in SQLite (its write lock held for long), writes wait
#: for their commit again, as without a journal: the file never grows without bound.
_JOURNAL_CAP = 16 * 1024 * 1024

Statement = tuple[str, tuple[Any, ...]]


@dataclass(slots=True)
class _Write:
    statements: list[Statement]
    #: The call recorded by this write: given its row id once committed.
    trace: Trace | None = None
    finished: bool = False
    ok: bool = False
    #: Its place in the books' order (the journal's sequence number).
    seq: int = 0
    #: In the journal: acknowledged already, so retried until SQLite holds it.
    journaled: bool = False
    #: Woken when its write is committed (`finished`), or when it is to lead the next
    #: commit. Made only for a writer that waits: a journaled write never does, and an
    #: event a call costs ~2 µs.
    _event: anyio.Event | None = None
    _woken: bool = False

    def wake(self) -> None:
        self._woken = True
        if self._event is not None:
            self._event.set()

    async def woken(self) -> None:
        if not self._woken:
            if self._event is None:
                self._event = anyio.Event()
            await self._event.wait()


#: In journal mode, how long the committer lets writes gather into one transaction: the
#: journal has them already, and each transaction has a fixed cost (BEGIN, COMMIT, one
#: upsert of each rollup, agent and scope row it touches) that a group shares.
#: (py-spy at c=1: the commits' share of the daemon's samples was 11 % at 5 ms, 5.6 % at
#: 50 ms.) A read through the daemon never waits for it (`drain` commits at once).
COMMIT_EVERY_S = 0.025

#: How often the WAL the books wrote is checkpointed into the database file (seconds).
CHECKPOINT_EVERY_S = 1.0


class Books:
    """Commits run on the event loop's own thread while the write lock is free (a batch
    takes ~0.15 ms, less than a hop to a worker thread and back), in a worker thread when
    another connection holds it (the wait must not stall the loop). See store/writer.py.
    Behind the answers (journal mode) no call waits for a commit, and a group takes
    ~0.6 ms: it runs on the loop only while the loop is saturated (`LoopLoad`).

    There is no writer task: whoever queues a write while no commit runs leads the next
    one. It yields once (so that the calls settling in the same turn of the loop join its
    batch), then commits everything queued, in queue order, until its own write is done;
    what was queued meanwhile is handed to the next waiting writer, which leads from
    there. One commit at a time, and no call waits for more than the batches ahead of it
    and its own. (A writer task cost every call two task switches and its queue.)"""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._writer: BatchWriter | None = None
        self._since_checkpoint = 0
        self._pending: deque[_Write] = deque()
        self._leading = False
        self._closed = False
        self._closing = anyio.Event()
        self._journal: Journal | None = None
        #: The last sequence number given, and the last one SQLite holds (or failed to).
        self._seq = 0
        self._committed = 0
        #: True while the committer commits behind the answers (journal mode).
        self._behind = False
        #: The committer's last drain at close committed everything.
        self._clean = True
        self._work = anyio.Event()
        #: A reader waits: commit now, not at the end of the group's time.
        self._urgent = anyio.Event()
        #: The last sequence number a commit was tried for (committed, or as good as it
        #: gets): what readers wait for.
        self._tried = Watermark()
        #: How busy the loop has been since the last commit behind (where it runs).
        self._load = LoopLoad()

    async def record(self, trace: Trace, agent_spent_usd: float, scopes: tuple[Scope, ...]) -> bool:
        """A settled call: its trace, its agent's spend of all time and its scopes' window
        spend as they are now. Waits for the commit; False if it could not be written."""
        statements = [
            trace_store.insert_statement(trace),
            # Its hour's and day's usage sums, in the same transaction: rollups equal the
            # traces.
            *trace_store.rollup_statements(trace),
            (_UPDATE_SPEND, (agent_spent_usd, trace.agent_id)),
        ]
        statements += [(scope_store.SPEND_SQL, scope_store.spend_params(s)) for s in scopes]
        return await self._queue(statements, trace)

    async def save_scope(self, scope: Scope) -> bool:
        """A scope's limits and books as they are now (limits changed, window reset).
        Returns once SQLite holds it (`_settled`)."""
        return await self._settled(await self._queue([scope_store.save_statement(scope)]))

    async def delete_scope(self, key: str) -> bool:
        """Returns once SQLite holds the removal (`_settled`)."""
        return await self._settled(await self._queue([(_DELETE_SCOPE, (key,))]))

    async def _settled(self, ok: bool) -> bool:
        """A control change (limits, a removal) is in SQLite when its request is answered,
        not only in the journal: the daemon's own reads wait for the journal's commits,
        but a reader of the database file does not (`ironrt rm` deleted an agent's row
        at once and its scope's row up to a group's time later). Such changes are rare,
        so they take the commit now; a settled call still only waits for the journal."""
        await self.drain()
        return ok

    async def open_journal(self, path: Path) -> int:
        """Apply what the journal holds and SQLite does not (a daemon killed before its
        last commits), then journal every write from now on. Returns the records
        replayed. Raises `JournalReplayFailed` (the journal kept) if they cannot be
        applied: a full disk, say."""
        found = await self.db.scalar("SELECT value FROM meta WHERE key = ?", (_SEQ_KEY,))
        applied = int(found or 0)
        records = read_records(path)
        missing = [r for r in records if r.seq > applied]
        if missing:
            runs = _statements_of([_Write(r.statements, seq=r.seq) for r in missing])
            runs.append((_SET_SEQ, [(str(missing[-1].seq),)]))
            try:
                await self.db.write_many(runs)
            except sqlite3.Error as exc:
                raise JournalReplayFailed(
                    f"the books journal {path} holds {len(missing)} writes the database "
                    f"cannot take ({exc}); it is kept as it is for the next start"
                ) from None
        self._seq = self._committed = max([applied, *(r.seq for r in records)])
        journal = Journal.open(path)
        journal.empty()
        self._journal = journal
        return len(missing)

    async def drain(self) -> None:
        """Wait until SQLite holds every write queued before this call."""
        target = self._seq
        if not self._behind or self._committed >= target:
            return
        self._work.set()
        self._urgent.set()
        await self._tried.reach(target)

    async def _queue(self, statements: list[Statement], trace: Trace | None = None) -> bool:
        if self._closed:
            raise anyio.ClosedResourceError
        self._seq += 1
        item = _Write(statements, trace, seq=self._seq)
        self._pending.append(item)
        journal = self._journal
        if self._behind and journal is not None:
            self._work.set()
            if (
                journal.size < _JOURNAL_CAP
                and not journal.broken
                and journal.append(item.seq, statements)
            ):
                item.journaled = True
                return True  # durable in the journal; SQLite follows behind
            with anyio.CancelScope(shield=True):
                await item.woken()  # not journaled: wait for SQLite, as before
            return item.ok
        # Shielded: a commit must not be cut halfway (its batch holds other calls' writes),
        # nor may a writer handed the lead leave without taking it. A cancelled caller
        # waits for its commit (well under a millisecond, unless the lock is held).
        with anyio.CancelScope(shield=True):
            handed = False
            if self._leading:
                await item.woken()
                if item.finished:
                    return item.ok
                handed = True  # woken to lead: the previous leader's write is done
            self._leading = True
            try:
                if not handed:
                    await anyio.lowlevel.checkpoint()  # the same turn's calls join in
                while not item.finished:
                    batch = [self._pending.popleft()]
                    while self._pending and len(batch) < _MAX_BATCH:
                        batch.append(self._pending.popleft())
                    await self._commit(batch)
            finally:
                if self._pending:  # queued meanwhile: its first writer leads next
                    self._pending[0].wake()
                else:
                    self._leading = False
        return item.ok

    async def run(self) -> None:
        """The writer's connection, and its WAL checkpoints, for as long as the books are
        open (the daemon's and library mode's lifetime)."""
        if self.db.path is not None:
            self._writer = BatchWriter.open(self.db.path)
        try:
            async with anyio.create_task_group() as tg:
                if self._journal is not None and self._writer is not None:
                    tg.start_soon(self._commit_behind)
                await self._checkpoints(self._writer)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                while self._leading:  # a commit in a worker thread: let it end
                    await anyio.sleep(0.01)
                if self._writer is not None:
                    self._writer.close()
                    self._writer = None
                self._load.close()
                if self._journal is not None:
                    if self._clean and self._committed >= self._seq:
                        with contextlib.suppress(OSError):
                            self._journal.empty()  # a clean stop leaves nothing to replay
                    self._journal.close()
                    self._journal = None

    async def _commit_behind(self) -> None:
        """The committer of journal mode: whatever was queued since its last commit, in
        one transaction, as soon as the loop has a turn for it. At its end (the books
        closing) it commits what is left, and writes wait for their commit again."""
        self._behind = True
        try:
            while True:
                await self._work.wait()
                if not self._tried.waited_for:  # no reader waiting: let a group gather
                    with anyio.move_on_after(COMMIT_EVERY_S):
                        await self._urgent.wait()
                self._work = anyio.Event()
                self._urgent = anyio.Event()
                await self._commit_pending()
        finally:
            self._behind = False
            with anyio.CancelScope(shield=True):
                self._leading = True  # writes queued meanwhile wait for this drain
                try:
                    self._clean = await self._commit_pending(retry=False)
                finally:
                    self._leading = False

    async def _commit_pending(self, *, retry: bool = True) -> bool:
        """Commit everything queued when it begins, in order. A batch that fails is retried (with a
        growing pause: the disk is full, another process holds the lock) for the writes
        the journal holds, before anything after them, so that SQLite's record of the
        journal (`books_journal_seq`) never passes a write it does not hold. Without
        `retry` (closing) the first failure ends it, and the journal keeps the rest for
        the next start, and nothing queued meanwhile is left out. True if all of that is
        committed."""
        failures = 0
        # What was queued when it began: writes queued while a commit runs (in the worker
        # thread it takes a while) wait for the next group, not a commit of their own each.
        last = self._seq if retry else math.inf
        pending = self._pending
        while pending and pending[0].seq <= last:
            batch = [pending.popleft()]
            while pending and len(batch) < _MAX_BATCH and pending[0].seq <= last:
                batch.append(pending.popleft())
            if await self._commit(batch):
                failures = 0
                continue
            kept = [item for item in batch if item.journaled]
            if not retry:
                for item in (*kept, *self._pending):
                    item.finished = True
                    item.wake()
                self._pending.clear()
                return False
            self._pending.extendleft(reversed(kept))
            if kept:
                failures += 1
                await anyio.sleep(min(0.05 * 2**failures, 2.0))
        journal = self._journal
        if journal is not None and journal.size >= _EMPTY_AT and self._committed >= self._seq:
            try:
                journal.empty()
            except OSError as exc:
                log.warning("could not empty the books' journal: %s", exc)
        return True

    async def _checkpoints(self, writer: BatchWriter | None) -> None:
        """The writer never checkpoints inside a commit (store/writer.py): do it here, off
        the loop, once a second while calls are being written."""
        while not self._closed:
            with anyio.move_on_after(CHECKPOINT_EVERY_S):
                await self._closing.wait()
            if self._since_checkpoint and writer is not None:
                self._since_checkpoint = 0
                try:
                    await writer.checkpoint()
                except sqlite3.Error as exc:
                    log.warning("could not checkpoint the books' WAL: %s", exc)

    async def _commit(self, batch: list[_Write]) -> bool:
        """One transaction for the batch; False if it failed (each waiting write is told,
        the journaled ones are the caller's to retry)."""
        writer = self._writer
        runs = _statements_of(batch)
        if self._journal is not None:
            runs.append((_SET_SEQ, [(str(batch[-1].seq),)]))
        try:
            if writer is None:
                ids = await self.db.write_many(runs, trace_store.INSERTS)
            else:
                # Behind the answers, a loop with time to spare leaves the commit to the
                # worker thread (`LoopLoad`); a write someone waits for commits now.
                here = not self._behind or self._load.saturated()
                done = writer.try_now(runs, trace_store.INSERTS) if here else None
                ids = (
                    done if done is not None else await writer.write_many(runs, trace_store.INSERTS)
                )
                self._since_checkpoint += 1
            # The calls' row ids, in queue order: what `traces/{id}` uses.
            for trace, row_id in zip((i.trace for i in batch if i.trace), ids, strict=True):
                trace.id = row_id
            ok = True
        except sqlite3.Error as exc:
            # Disk full, say. The books stay right in memory (the budget still holds), and
            # the next write of each row carries its running total.
            log.error("could not write %d book entries: %s", len(batch), exc)
            ok = False
        for item in batch:
            if ok or not item.journaled:
                item.ok = ok
                item.finished = True
                item.wake()
        last = batch[-1].seq
        if ok:
            self._committed = last
        # Readers waiting for these writes read now: committed, or as good as it gets.
        self._tried.advance(last)
        return ok

    def close(self) -> None:
        """No more writes; `run` checkpoints what was written and ends."""
        self._closed = True
        self._closing.set()


#: Statements that set a row's running total (an absolute value, not an increment), keyed
#: by the parameter naming the row: within a stretch of the queue, the last one of each row
#: is the stretch's effect.
_SNAPSHOTS = {_UPDATE_SPEND: 1, scope_store.SPEND_SQL: 0}
#: The rollup upserts: 7 key columns (bucket, agent, name, project, provider, model,
#: refused), then 8 figures that add up.
_ROLLUPS = (trace_store.ROLLUP_SQL, trace_store.DAILY_ROLLUP_SQL)
_ROLLUP_KEY = 7


def _statements_of(batch: list[_Write]) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """A batch's writes as few statements as have the same effect, in one transaction.

    The calls' inserts and rollup upserts touch no row anything else writes, and the
    upserts only add: each kind runs first as one executemany over the whole batch, the
    upserts of one rollup row summed into one (32 calls of one agent and model in one hour
    are one upsert, not 32). The running totals (an agent's spend, a scope's window spend)
    are snapshots: between two other statements only the last of each row is written.
    Everything else runs in queue order, consecutive statements of one shape as one.
    """
    inserts: list[tuple[Any, ...]] = []
    rollups: dict[str, dict[tuple[Any, ...], list[Any]]] = {sql: {} for sql in _ROLLUPS}
    runs: list[tuple[str, list[tuple[Any, ...]]]] = [(trace_store.INSERT_SQL, inserts)]
    rollup_at = len(runs)
    snapshots: dict[str, dict[Any, tuple[Any, ...]]] = {sql: {} for sql in _SNAPSHOTS}

    def flush_snapshots() -> None:
        for sql, rows in snapshots.items():
            if rows:
                runs.append((sql, list(rows.values())))
                rows.clear()

    for item in batch:
        for sql, params in item.statements:
            if sql == trace_store.INSERT_SQL:
                inserts.append(params)
            elif sql in rollups:
                sums = rollups[sql]
                key = params[:_ROLLUP_KEY]
                row = sums.get(key)
                if row is None:
                    sums[key] = list(params)
                else:
                    for i in range(_ROLLUP_KEY, len(params)):
                        row[i] += params[i]
            elif sql in snapshots:
                snapshots[sql][params[_SNAPSHOTS[sql]]] = params
            else:
                flush_snapshots()
                if runs[-1][0] == sql and sql != scope_store.SAVE_SQL:
                    runs[-1][1].append(params)
                else:
                    runs.append((sql, [params]))
    flush_snapshots()
    runs[rollup_at:rollup_at] = [
        (sql, [tuple(row) for row in sums.values()]) for sql, sums in rollups.items()
    ]
    runs[0:1] = trace_store.insert_runs(inserts)
    return runs
