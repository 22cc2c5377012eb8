"""The verifier service's state: one SQLAlchemy Core store over SQLite or PostgreSQL.

    store = Store.open("sqlite:////var/lib/attestd-verifier/fleet.db")
    # or Store.open("postgresql://verifier@db/fleet") for several replicas
    store.add_agent(AgentSpec(name="gpu-01", address="10.0.0.7:7443", ...), now=time.time())
    for agent in store.claim_due("replica-a", now=time.time(), lease_s=30, limit=8):
        ...                                   # appraise it, then
        store.finish(agent.id, "replica-a", outcome, now=time.time(), next_due_at=...)

Both backends run the same statements. Where they differ is how replicas
share the fleet: on PostgreSQL :meth:`Store.claim_due` locks the due lease rows
with ``SELECT ... FOR UPDATE SKIP LOCKED``, so replicas claiming at once take
disjoint agents without waiting on each other; SQLite has one writer at a time
(``BEGIN IMMEDIATE``), which makes the same select-then-update atomic.

A lease is held for one appraisal and released with its result. Every write
that ends an appraisal is fenced by the lease: :meth:`Store.finish` commits
only while the caller still owns an unexpired lease, so a replica that
stalled past its lease can never overwrite the work of the one that took over.
Replicas compare lease times with their own clocks: keep them synchronised
(NTP) to well within the lease period.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError

from attestd.evidence import LogCheckpoint
from attestd.verifier.errors import VerifierError
from attestd.verifier.service.errors import FleetExtraMissingError
from attestd.verifier.service.schema import (
    agents,
    checkpoints,
    leases,
    migrate,
    nonces,
    results,
    status_changes,
    webhook_deliveries,
)

__all__ = [
    "NONCE_REPLAYED",
    "AgentExistsError",
    "AgentNotFoundError",
    "AgentRecord",
    "AgentSpec",
    "Backend",
    "DatabaseUrlError",
    "Delivery",
    "LeaseLostError",
    "Outcome",
    "Pull",
    "ResultRecord",
    "Retention",
    "StatusChange",
    "Store",
    "StoreUnavailableError",
]

#: The status of an agent registered but not yet appraised.
PENDING = "none"
NONCE_REPLAYED = "nonce_replayed"
"""The reason stored when the nonce an answer carried had been used before, or expired."""


class StoreError(VerifierError):
    """The verifier service's database refused or failed an operation."""

    reason = "store_error"


class DatabaseUrlError(StoreError):
    """The database URL is not a ``sqlite:///`` or ``postgresql://`` URL."""

    reason = "database_url_invalid"


class StoreUnavailableError(StoreError):
    """The database cannot be reached or opened."""

    reason = "database_unavailable"


class AgentExistsError(StoreError):
    """An agent of that name is already registered."""

    reason = "agent_exists"


class AgentNotFoundError(StoreError):
    """No agent of that name is registered."""

    reason = "agent_not_found"


class LeaseLostError(StoreError):
    """The lease on an agent expired (or the agent was removed) before its result was stored."""

    reason = "lease_lost"


class Backend(enum.StrEnum):
    SQLITE = "sqlite"
    POSTGRESQL = "postgresql"


@dataclass(frozen=True)
class AgentSpec:
    """What an operator registers: where the agent is, how to reach it, what to expect."""

    name: str
    address: str
    cert_path: str
    key_path: str
    ca_path: str
    server_name: str
    policy_path: str
    interval_s: float
    #: Push mode: the SPKI pin of the client certificate the agent pushes with ("": pulled).
    push_pin: str = ""


@dataclass(frozen=True)
class AgentRecord:
    """A registered agent and its current status."""

    id: int
    spec: AgentSpec
    status: str
    status_reason: str
    registered_at: float
    next_due_at: float
    last_appraised_at: float | None


@dataclass(frozen=True)
class Pull:
    """A claimed agent with what its pull needs: the nonce issued for it and its checkpoint."""

    agent: AgentRecord
    nonce: bytes
    checkpoint: LogCheckpoint | None


@dataclass(frozen=True)
class Outcome:
    """What one pull ended with, to be stored by :meth:`Store.finish`.

    ``checkpoint`` is the new verified prefix (None: keep the old one); ``ear``
    the signed result, absent when there was no appraisal (an unreachable
    agent, a log that went backwards); ``nonce`` the one the appraised
    evidence answered, consumed when the outcome is stored.
    """

    status: str
    reason: str
    started_at: float
    ear: str | None = None
    log_length: int | None = None
    checkpoint: LogCheckpoint | None = None
    nonce: bytes | None = None


@dataclass(frozen=True)
class ResultRecord:
    agent_name: str
    replica: str
    started_at: float
    appraised_at: float
    status: str
    reason: str
    ear: str | None
    log_length: int | None


@dataclass(frozen=True)
class StatusChange:
    id: int
    agent_name: str
    at: float
    old_status: str
    new_status: str
    reason: str


@dataclass(frozen=True)
class Retention:
    """Result history kept: at most ``per_agent`` rows per agent, none older than ``max_age_s``."""

    per_agent: int = 1000
    max_age_s: float | None = 30 * 86400.0


@dataclass(frozen=True)
class Delivery:
    id: int
    agent_name: str
    url: str
    body: bytes
    attempts: int


# The statements of every pull, as SQL text run on the DBAPI connection itself. Through
# SQLAlchemy Core each statement cost about 50 µs of Python (execution context, parameter
# processing, result wrapping, events) on top of the database's own work, several times
# what SQLite needs to run it; the drivers cache the prepared statements (sqlite3's
# statement cache, psycopg's automatic prepare). "?" marks a parameter; _Sql renders it
# in the driver's style. Both backends run the same text, but for the claim's row locks.
_CLAIM_SELECT = (
    "SELECT a.id, a.name, a.address, a.cert_path, a.key_path, a.ca_path, a.server_name,"
    " a.policy_path, a.interval_s, a.push_pin, a.status, a.status_reason, a.registered_at,"
    " a.next_due_at, a.last_appraised_at, c.length, c.head FROM leases l"
    " JOIN agents a ON a.id = l.agent_id"
    " LEFT OUTER JOIN checkpoints c ON c.agent_id = l.agent_id"
    " WHERE (l.owner IS NULL OR l.expires_at <= ?)"
    " AND ((a.push_pin = '' AND a.next_due_at <= ?)"
    " OR (a.push_pin != '' AND a.next_due_at + a.interval_s <= ?))"
    " ORDER BY a.next_due_at LIMIT ?"
)
# PostgreSQL: rows another replica is claiming right now are skipped, not waited for.
# SQLite has one writer at a time (BEGIN IMMEDIATE): the select-then-update is atomic.
_CLAIM_LOCK_POSTGRESQL = " FOR UPDATE OF l SKIP LOCKED"
_CLAIM_UPDATE = "UPDATE leases SET owner = ?, expires_at = ? WHERE agent_id = ?"
_INSERT_NONCE = (
    "INSERT INTO nonces (nonce, agent_id, issued_at, expires_at, consumed) VALUES (?, ?, ?, ?, ?)"
)
_CONSUME_NONCE = (
    "UPDATE nonces SET consumed = ?"
    " WHERE nonce = ? AND agent_id = ? AND consumed = ? AND expires_at > ?"
)
_FENCED_RELEASE = (
    "UPDATE leases SET owner = NULL, expires_at = 0.0"
    " WHERE agent_id = ? AND owner = ? AND expires_at > ?"
)
_NAME_AND_STATUS = "SELECT name, status FROM agents WHERE id = ?"
_SELECT_CHECKPOINT = "SELECT length, head FROM checkpoints WHERE agent_id = ?"
_LEASES_HELD = "SELECT count(*) FROM leases WHERE owner = ? AND expires_at > ?"
_SUMMARY = "SELECT status, count(*) FROM agents GROUP BY status"
_DELIVERIES_DUE = (
    "SELECT 1 FROM webhook_deliveries WHERE state = 'queued' AND next_attempt_at <= ? LIMIT 1"
)
#: A hot-path connection kept (checked out of the pool) between transactions goes back to
#: the pool once it has been idle this long, so that one idle longer is checked out again
#: through the pool, with its pre-ping on PostgreSQL (a server restart is noticed there).
_HOT_IDLE_S = 1.0
#: At most this many kept: pulls' transactions are short, so few overlap.
_HOT_KEPT = 4
_INSERT_RESULT = (
    "INSERT INTO results"
    " (agent_id, replica, started_at, appraised_at, status, reason, ear, log_length)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_SET_STATUS = (
    "UPDATE agents SET status = ?, status_reason = ?, next_due_at = ?,"
    " last_appraised_at = ? WHERE id = ?"
)
# The same, only if the agent's name and status are still those it was claimed with:
# then that is the old status, and no statement has to read it first (Store._finish).
_SET_STATUS_FROM = _SET_STATUS + " AND name = ? AND status = ?"
_UPDATE_CHECKPOINT = (
    "UPDATE checkpoints SET length = ?, head = ?, updated_at = ? WHERE agent_id = ?"
)
_INSERT_CHECKPOINT = (
    "INSERT INTO checkpoints (agent_id, length, head, updated_at) VALUES (?, ?, ?, ?)"
)
_INSERT_CHANGE = (
    "INSERT INTO status_changes"
    " (agent_id, agent_name, at, old_status, new_status, reason)"
    " VALUES (?, ?, ?, ?, ?, ?) RETURNING id"
)
# Not a pull's: SQLAlchemy Core statements, where a statement more or less does not count.
_B = bindparam
_FREE = or_(leases.c.owner.is_(None), leases.c.expires_at <= _B("b_now"))


class _Sql:
    """The pull's statements in one driver's parameter style (sqlite3 ``?``, psycopg ``%s``)."""

    def __init__(self, backend: Backend) -> None:
        def render(sql: str) -> str:
            return sql if backend is Backend.SQLITE else sql.replace("?", "%s")

        lock = _CLAIM_LOCK_POSTGRESQL if backend is Backend.POSTGRESQL else ""
        self.claim_select = render(_CLAIM_SELECT + lock)
        self.claim_update = render(_CLAIM_UPDATE)
        self.insert_nonce = render(_INSERT_NONCE)
        self.consume_nonce = render(_CONSUME_NONCE)
        self.fenced_release = render(_FENCED_RELEASE)
        self.name_and_status = render(_NAME_AND_STATUS)
        self.select_checkpoint = render(_SELECT_CHECKPOINT)
        self.insert_result = render(_INSERT_RESULT)
        self.set_status = render(_SET_STATUS)
        self.set_status_from = render(_SET_STATUS_FROM)
        self.update_checkpoint = render(_UPDATE_CHECKPOINT)
        self.insert_checkpoint = render(_INSERT_CHECKPOINT)
        self.insert_change = render(_INSERT_CHANGE)
        # SQLite's BEGIN IMMEDIATE takes the write lock up front (see _sqlite_pragmas);
        # psycopg begins a transaction by itself at the first statement.
        self.begin = "BEGIN IMMEDIATE" if backend is Backend.SQLITE else None
        self.leases_held = render(_LEASES_HELD)
        self.summary = render(_SUMMARY)
        self.deliveries_due = render(_DELIVERIES_DUE)


def _agent_from_row(row: Sequence[Any]) -> AgentRecord:
    """An AgentRecord from a row of _CLAIM_SELECT (its first 15 columns)."""
    spec = AgentSpec(
        name=row[1],
        address=row[2],
        cert_path=row[3],
        key_path=row[4],
        ca_path=row[5],
        server_name=row[6],
        policy_path=row[7],
        interval_s=row[8],
        push_pin=row[9],
    )
    return AgentRecord(
        id=row[0],
        spec=spec,
        status=row[10],
        status_reason=row[11],
        registered_at=row[12],
        next_due_at=row[13],
        last_appraised_at=row[14],
    )


def _engine_for(url: str, password: str | None = None) -> tuple[Engine, Backend]:
    try:
        parsed = make_url(url)
    except ArgumentError:
        # Not echoed: a malformed URL may still hold a password.
        raise DatabaseUrlError("the database url is not a URL") from None
    if password is not None:
        if parsed.password is not None:
            raise DatabaseUrlError("the database url carries a password and a password file too")
        parsed = parsed.set(password=password)
    backend_name = parsed.get_backend_name()
    if backend_name == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            # Each connection would get its own empty in-memory database.
            raise DatabaseUrlError("a SQLite database must be a file: sqlite:////path/fleet.db")
        # No pre-ping: a file does not drop connections, and a ping per checkout is a
        # statement more per transaction.
        engine = create_engine(parsed.set(drivername="sqlite+pysqlite"))
        _sqlite_pragmas(engine)
        return engine, Backend.SQLITE
    if backend_name == "postgresql":
        try:
            engine = create_engine(
                parsed.set(drivername="postgresql+psycopg"), pool_pre_ping=True, pool_size=10
            )
        except ImportError:
            raise FleetExtraMissingError("psycopg") from None
        return engine, Backend.POSTGRESQL
    raise DatabaseUrlError(f"database url scheme {parsed.drivername!r}: use sqlite or postgresql")


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def connect(dbapi_connection: Any, _record: Any) -> None:
        # pysqlite's own transaction handling would defer BEGIN; we issue it ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=10000")
        cursor.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        # IMMEDIATE takes the write lock up front: a claim's select-then-update is atomic.
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def _record(row: Any) -> AgentRecord:
    spec = AgentSpec(
        name=row.name,
        address=row.address,
        cert_path=row.cert_path,
        key_path=row.key_path,
        ca_path=row.ca_path,
        server_name=row.server_name,
        policy_path=row.policy_path,
        interval_s=row.interval_s,
        push_pin=row.push_pin,
    )
    return AgentRecord(
        id=row.id,
        spec=spec,
        status=row.status,
        status_reason=row.status_reason,
        registered_at=row.registered_at,
        next_due_at=row.next_due_at,
        last_appraised_at=row.last_appraised_at,
    )


class Store:
    """The fleet's state; thread-safe (a connection pool), shared by replicas via the database."""

    def __init__(self, engine: Engine, backend: Backend) -> None:
        self.engine = engine
        self.backend = backend
        self._sql = _Sql(backend)
        # Pool connections kept between hot-path transactions (newest last), with when
        # each was handed back: the pool's checkout and check-in (its events, reset and
        # pre-ping) cost as much as a pull's whole SQLite transaction.
        self._hot: list[tuple[float, Any]] = []
        self._hot_lock = threading.Lock()
        # This process's hot-path SQLite write transactions, one at a time (see _raw_tx).
        self._writer = threading.Lock()

    @classmethod
    def open(cls, url: str, *, now: float, password: str | None = None) -> Store:
        """Connect to ``url`` and apply the migrations it lacks (StoreUnavailableError if down).

        ``password``, if given, is the database password (from a file, so that the URL
        in a configuration holds none); a URL with a password of its own is refused then.
        """
        engine, backend = _engine_for(url, password)
        store = cls(engine, backend)
        try:
            with store._tx() as connection:
                if backend is Backend.POSTGRESQL:
                    # Replicas starting together would race to create the same tables.
                    connection.execute(text("SELECT pg_advisory_xact_lock(7436121)"))
                migrate(connection, now=now)
        except OperationalError as err:
            engine.dispose()
            raise StoreUnavailableError(f"cannot open the database: {err.orig}") from None
        return store

    def close(self) -> None:
        with self._hot_lock:
            kept, self._hot = self._hot, []
        for _, connection in kept:
            connection.close()
        self.engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self.engine.begin() as connection:
            yield connection

    @contextmanager
    def _raw_tx(self, *, write: bool = True) -> Iterator[Any]:
        """One transaction on a pooled connection's DBAPI cursor: the pull's hot path.

        The connection is one kept from a recent hot-path transaction if there is one
        (:meth:`_hot_connection`), else the pool's (its checkout, PostgreSQL's pre-ping and
        the SQLite pragmas apply as for :meth:`_tx`); rolled back on any exception, and
        then handed back to the pool, never kept. ``write=False``: a read, which on SQLite
        does not take the write lock (BEGIN IMMEDIATE) that writers queue on.
        """
        connection = self._hot_connection()
        # SQLite: this process's writers take turns on a lock of their own before BEGIN
        # IMMEDIATE, so only one of them at a time meets the database's write lock. Queued
        # there instead, each would poll it in SQLite's busy handler (sleep 1 ms and more,
        # wake, retry) while the holder's commit takes some 0.1 ms; a lock hands over at
        # once. Other processes' writers (a second replica, the CLI) still queue on the
        # database's lock as before.
        writer = self._writer if write and self._sql.begin is not None else None
        try:
            cursor = connection.cursor()
            try:
                if writer is not None:
                    writer.acquire()
                try:
                    if writer is not None:
                        cursor.execute(self._sql.begin)
                    yield cursor
                    connection.commit()
                except BaseException:
                    try:
                        connection.rollback()
                    except Exception:
                        # The connection itself failed (the server went away): it is not
                        # handed back to the pool for the next transaction to fail on too.
                        connection.invalidate()
                    raise
                finally:
                    if writer is not None:
                        writer.release()
            finally:
                cursor.close()
        except BaseException:
            connection.close()
            raise
        self._keep(connection)

    def _hot_connection(self) -> Any:
        """The most recently kept connection if it was idle under _HOT_IDLE_S, else the pool's.

        Kept ones idle longer go back to the pool (older ones lie below newer ones).
        """
        now = time.monotonic()
        stale: list[Any] = []
        found = None
        with self._hot_lock:
            if self._hot:
                returned_at, connection = self._hot.pop()
                if now - returned_at <= _HOT_IDLE_S:
                    found = connection
                else:
                    stale = [connection] + [c for _, c in self._hot]
                    self._hot.clear()
        for connection in stale:
            connection.close()
        return found if found is not None else self.engine.raw_connection()

    def _keep(self, connection: Any) -> None:
        """Keep a connection whose transaction committed, or give it back to the pool."""
        with self._hot_lock:
            if len(self._hot) < _HOT_KEPT:
                self._hot.append((time.monotonic(), connection))
                return
        connection.close()

    # -- the registry ----------------------------------------------------------------------

    def add_agent(self, spec: AgentSpec, *, now: float) -> AgentRecord:
        """Register ``spec``, due at once (AgentExistsError if the name is taken)."""
        values = {
            "name": spec.name,
            "address": spec.address,
            "cert_path": spec.cert_path,
            "key_path": spec.key_path,
            "ca_path": spec.ca_path,
            "server_name": spec.server_name,
            "policy_path": spec.policy_path,
            "interval_s": spec.interval_s,
            "push_pin": spec.push_pin,
            "status": PENDING,
            "status_reason": "registered, not yet appraised",
            "registered_at": now,
            "next_due_at": now,
        }
        try:
            with self._tx() as connection:
                agent_id = connection.execute(
                    agents.insert().values(**values).returning(agents.c.id)
                ).scalar_one()
                connection.execute(leases.insert().values(agent_id=agent_id, expires_at=0.0))
        except IntegrityError:
            raise AgentExistsError(f"an agent named {spec.name!r} is already registered") from None
        return self.agent(spec.name)

    def remove_agent(self, name: str) -> None:
        """Forget ``name``, its checkpoint, results, nonces and lease (AgentNotFoundError)."""
        with self._tx() as connection:
            agent_id = connection.execute(select(agents.c.id).where(agents.c.name == name)).scalar()
            if agent_id is None:
                raise AgentNotFoundError(f"no agent named {name!r} is registered")
            for table in (leases, nonces, results, checkpoints):
                connection.execute(delete(table).where(table.c.agent_id == agent_id))
            connection.execute(delete(agents).where(agents.c.id == agent_id))

    def agent(self, name: str) -> AgentRecord:
        with self.engine.connect() as connection:
            row = connection.execute(select(agents).where(agents.c.name == name)).first()
        if row is None:
            raise AgentNotFoundError(f"no agent named {name!r} is registered")
        return _record(row)

    def agents(self) -> list[AgentRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(select(agents).order_by(agents.c.name)).all()
        return [_record(row) for row in rows]

    def summary(self) -> dict[str, int]:
        """Registered agents by status."""
        with self._raw_tx(write=False) as cursor:
            cursor.execute(self._sql.summary)
            rows = cursor.fetchall()
        return {str(status): int(count) for status, count in rows}

    # -- leases ------------------------------------------------------------------------------

    def claim_due(self, owner: str, *, now: float, lease_s: float, limit: int) -> list[AgentRecord]:
        """Lease up to ``limit`` due agents that no live lease holds, until ``now + lease_s``."""
        with self._raw_tx() as cursor:
            rows = self._claim(cursor, owner, now=now, lease_s=lease_s, limit=limit)
        return [_agent_from_row(row) for row in rows]

    def claim_pulls(
        self,
        owner: str,
        *,
        now: float,
        lease_s: float,
        limit: int,
        nonce: Callable[[], bytes],
    ) -> list[Pull]:
        """:meth:`claim_due`, and for each agent a nonce from ``nonce()`` issued (valid for
        the lease) and its checkpoint read: a pull's reads and writes before it calls the
        agent, in the claim's one transaction."""
        with self._raw_tx() as cursor:
            return self._claim_pulls(
                cursor, owner, now=now, lease_s=lease_s, next_pulls=limit, nonce=nonce
            )

    def _claim_pulls(
        self,
        cursor: Any,
        owner: str,
        *,
        now: float,
        lease_s: float,
        next_pulls: int,
        nonce: Callable[[], bytes],
        ahead_s: float = 0.0,
    ) -> list[Pull]:
        rows = self._claim(
            cursor, owner, now=now, lease_s=lease_s, limit=next_pulls, ahead_s=ahead_s
        )
        pulls = [
            Pull(
                _agent_from_row(row),
                nonce(),
                None if row[15] is None else LogCheckpoint(int(row[15]), bytes(row[16])),
            )
            for row in rows
        ]
        if pulls:
            expires = now + lease_s
            cursor.executemany(
                self._sql.insert_nonce,
                [(p.nonce, p.agent.id, now, expires, False) for p in pulls],
            )
        return pulls

    def _claim(
        self,
        cursor: Any,
        owner: str,
        *,
        now: float,
        lease_s: float,
        limit: int,
        ahead_s: float = 0.0,
    ) -> list[Sequence[Any]]:
        if limit <= 0:
            return []
        # Leases and pushing agents' overdue time against ``now``; pulled agents' due time
        # against ``now + ahead_s`` (a claim that waits for the agent's time to come).
        cursor.execute(self._sql.claim_select, (now, now + ahead_s, now, limit))
        rows: list[Sequence[Any]] = cursor.fetchall()
        if rows:
            expires = now + lease_s
            cursor.executemany(self._sql.claim_update, [(owner, expires, row[0]) for row in rows])
        return rows

    def claim(self, agent_id: int, owner: str, *, now: float, lease_s: float) -> bool:
        """Lease the one agent ``agent_id`` (a push), False if a live lease holds it.

        One conditional UPDATE: of two replicas (or two pushes) at once, one wins.
        """
        with self._tx() as connection:
            taken = connection.execute(
                update(leases)
                .where(and_(leases.c.agent_id == agent_id, _FREE))
                .values(owner=owner, expires_at=now + lease_s),
                {"b_now": now},
            ).rowcount
        return bool(taken == 1)

    def leases_held(self, owner: str, *, now: float) -> int:
        with self._raw_tx(write=False) as cursor:
            cursor.execute(self._sql.leases_held, (owner, now))
            (count,) = cursor.fetchone()
        return int(count)

    def release(self, agent_id: int, owner: str) -> None:
        """Give up a lease without a result (shutting down); the agent is due again at once."""
        with self._tx() as connection:
            connection.execute(
                update(leases)
                .where(and_(leases.c.agent_id == agent_id, leases.c.owner == owner))
                .values(owner=None, expires_at=0.0)
            )

    # -- nonces ------------------------------------------------------------------------------

    def issue_nonce(self, agent_id: int, nonce: bytes, *, now: float, ttl_s: float) -> None:
        with self._raw_tx() as cursor:
            self._insert_nonce(cursor, agent_id, nonce, now=now, ttl_s=ttl_s)

    def begin_pull(
        self, agent_id: int, nonce: bytes, *, now: float, ttl_s: float
    ) -> LogCheckpoint | None:
        """Issue ``nonce`` and read the verified checkpoint, in one transaction."""
        with self._raw_tx() as cursor:
            self._insert_nonce(cursor, agent_id, nonce, now=now, ttl_s=ttl_s)
            return self._read_checkpoint(cursor, agent_id)

    def consume_nonce(self, agent_id: int, nonce: bytes, *, now: float) -> bool:
        """Accept ``nonce`` for ``agent_id`` once: False if unknown, expired or already used.

        One conditional UPDATE, so two replicas (or two requests) presenting the
        same nonce at once cannot both see it unused.
        """
        with self._raw_tx() as cursor:
            return self._consume(cursor, agent_id, nonce, now=now)

    def _insert_nonce(
        self, cursor: Any, agent_id: int, nonce: bytes, *, now: float, ttl_s: float
    ) -> None:
        cursor.execute(self._sql.insert_nonce, (nonce, agent_id, now, now + ttl_s, False))

    def _consume(self, cursor: Any, agent_id: int, nonce: bytes, *, now: float) -> bool:
        # Consumed once: of two transactions presenting it, one updates the row.
        cursor.execute(self._sql.consume_nonce, (True, nonce, agent_id, False, now))
        return bool(cursor.rowcount == 1)

    # -- appraisals --------------------------------------------------------------------------

    def checkpoint(self, agent_id: int) -> LogCheckpoint | None:
        """The verified prefix of the agent's log, None before its first verified log."""
        with self._raw_tx(write=False) as cursor:
            return self._read_checkpoint(cursor, agent_id)

    def _read_checkpoint(self, cursor: Any, agent_id: int) -> LogCheckpoint | None:
        cursor.execute(self._sql.select_checkpoint, (agent_id,))
        row = cursor.fetchone()
        return None if row is None else LogCheckpoint(int(row[0]), bytes(row[1]))

    def finish(
        self,
        agent_id: int,
        owner: str,
        outcome: Outcome,
        *,
        now: float,
        next_due_at: float,
        as_claimed: AgentRecord | None = None,
    ) -> StatusChange | None:
        """Store ``outcome`` and release the lease, if ``owner`` still holds it.

        The outcome's nonce, if any, is consumed in the same transaction; if it
        cannot be (used before, or expired) the outcome stored is ``nonce_replayed``
        instead, without its EAR or checkpoint.
        Returns the status change this outcome made, or None. LeaseLostError,
        with nothing written, when the lease has expired or the agent was removed.
        ``as_claimed``: the agent's record as this owner claimed it, whose name and
        status save reading them (its status is checked by the update itself, and
        read only when it changed since).
        """
        with self._raw_tx() as cursor:
            return self._finish(cursor, agent_id, owner, outcome, now, next_due_at, as_claimed)

    def finish_and_claim(
        self,
        agent_id: int,
        owner: str,
        outcome: Outcome,
        *,
        now: float,
        next_due_at: float,
        next_pulls: int,
        lease_s: float,
        nonce: Callable[[], bytes],
        ahead_s: float = 0.0,
        as_claimed: AgentRecord | None = None,
    ) -> tuple[StatusChange | None, list[Pull]]:
        """:meth:`finish`, then :meth:`claim_pulls` of up to ``next_pulls`` agents, in one
        transaction: a replica that keeps pulling pays one transaction per pull, not two.

            change, pulls = store.finish_and_claim(agent.id, "replica-a", outcome, now=now,
                                                   next_due_at=due, next_pulls=1, lease_s=30,
                                                   nonce=lambda: os.urandom(32))

        ``ahead_s``: also claim a pulled agent due within that many seconds from ``now``
        (never a pushing one before it is overdue); its caller waits for its ``next_due_at``
        before pulling it. On LeaseLostError nothing is written and nothing claimed.
        ``as_claimed`` as for :meth:`finish`.
        """
        with self._raw_tx() as cursor:
            change = self._finish(cursor, agent_id, owner, outcome, now, next_due_at, as_claimed)
            pulls = self._claim_pulls(
                cursor,
                owner,
                now=now,
                lease_s=lease_s,
                next_pulls=next_pulls,
                nonce=nonce,
                ahead_s=ahead_s,
            )
        return change, pulls

    def _finish(
        self,
        cursor: Any,
        agent_id: int,
        owner: str,
        outcome: Outcome,
        now: float,
        next_due_at: float,
        as_claimed: AgentRecord | None = None,
    ) -> StatusChange | None:
        sql = self._sql
        cursor.execute(sql.fenced_release, (agent_id, owner, now))
        if cursor.rowcount != 1:
            raise LeaseLostError(f"the lease on agent {agent_id} is no longer {owner!r}'s")
        nonce = outcome.nonce
        if nonce is not None and not self._consume(cursor, agent_id, nonce, now=now):
            outcome = Outcome("contraindicated", NONCE_REPLAYED, outcome.started_at)
        status_set = (outcome.status, outcome.reason, next_due_at, now, agent_id)
        claimed = as_claimed if as_claimed is not None and as_claimed.id == agent_id else None
        if claimed is not None:
            # The claimed status, if still the agent's, is the old one: the update says
            # whether it is (under the lease only its owner changes it, but a push's
            # record may predate its lease), and only if not is it read.
            name, old_status = claimed.spec.name, claimed.status
            cursor.execute(sql.set_status_from, (*status_set, name, old_status))
            if cursor.rowcount != 1:
                claimed = None
        if claimed is None:
            cursor.execute(sql.name_and_status, (agent_id,))
            name, old_status = cursor.fetchone()
            cursor.execute(sql.set_status, status_set)
        cursor.execute(
            sql.insert_result,
            (
                agent_id,
                owner,
                outcome.started_at,
                now,
                outcome.status,
                outcome.reason,
                outcome.ear,
                outcome.log_length,
            ),
        )
        if outcome.checkpoint is not None:
            self._set_checkpoint(cursor, agent_id, outcome.checkpoint, now)
        if old_status == outcome.status:
            return None
        cursor.execute(
            sql.insert_change,
            (agent_id, name, now, old_status, outcome.status, outcome.reason),
        )
        (change_id,) = cursor.fetchone()
        return StatusChange(int(change_id), name, now, old_status, outcome.status, outcome.reason)

    def _set_checkpoint(
        self, cursor: Any, agent_id: int, checkpoint: LogCheckpoint, now: float
    ) -> None:
        values = (checkpoint.length, checkpoint.head, now, agent_id)
        cursor.execute(self._sql.update_checkpoint, values)
        if cursor.rowcount == 0:
            cursor.execute(
                self._sql.insert_checkpoint, (agent_id, checkpoint.length, checkpoint.head, now)
            )

    def latest_result(self, name: str) -> ResultRecord | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                select(results, agents.c.name)
                .join(agents, agents.c.id == results.c.agent_id)
                .where(agents.c.name == name)
                .order_by(results.c.id.desc())
                .limit(1)
            ).first()
        return None if row is None else _result(row)

    def history(self, name: str) -> list[ResultRecord]:
        """Every stored result of ``name``, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(results, agents.c.name)
                .join(agents, agents.c.id == results.c.agent_id)
                .where(agents.c.name == name)
                .order_by(results.c.id)
            ).all()
        return [_result(row) for row in rows]

    def all_results(self) -> list[ResultRecord]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(results, agents.c.name)
                .join(agents, agents.c.id == results.c.agent_id)
                .order_by(results.c.id)
            ).all()
        return [_result(row) for row in rows]

    def status_changes(self, *, after: int = 0, limit: int = 100) -> list[StatusChange]:
        """Status changes with an id above ``after``, oldest first (a cursor for watchers)."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(status_changes)
                .where(status_changes.c.id > after)
                .order_by(status_changes.c.id)
                .limit(limit)
            ).all()
        return [
            StatusChange(r.id, r.agent_name, r.at, r.old_status, r.new_status, r.reason)
            for r in rows
        ]

    def last_status_change_id(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.max(status_changes.c.id))).scalar() or 0)

    def prune(self, retention: Retention, *, now: float) -> int:
        """Apply ``retention`` to results (the count returned), status changes and finished
        webhook deliveries; delete spent or expired nonces."""
        deleted = 0
        with self._tx() as connection:
            if retention.max_age_s is not None:
                cutoff = now - retention.max_age_s
                deleted += connection.execute(
                    delete(results).where(results.c.appraised_at < cutoff)
                ).rowcount
                # The change history and finished deliveries age out with the results.
                connection.execute(delete(status_changes).where(status_changes.c.at < cutoff))
                connection.execute(
                    delete(webhook_deliveries).where(
                        and_(
                            webhook_deliveries.c.state != "queued",
                            webhook_deliveries.c.created_at < cutoff,
                        )
                    )
                )
            # The id of each agent's per_agent-th newest result; older ones go.
            ranked = (
                select(
                    results.c.id,
                    func.row_number()
                    .over(partition_by=results.c.agent_id, order_by=results.c.id.desc())
                    .label("rank"),
                )
            ).subquery()
            excess = select(ranked.c.id).where(ranked.c.rank > retention.per_agent)
            deleted += connection.execute(delete(results).where(results.c.id.in_(excess))).rowcount
            connection.execute(
                delete(nonces).where(or_(nonces.c.consumed.is_(True), nonces.c.expires_at <= now))
            )
        return deleted

    # -- webhook deliveries -----------------------------------------------------------------

    def enqueue_delivery(
        self, agent_name: str, url: str, body: bytes, *, now: float, max_queued: int
    ) -> bool:
        """Queue one delivery; False (not queued) when ``max_queued`` are already waiting."""
        with self._tx() as connection:
            queued = connection.execute(
                select(func.count())
                .select_from(webhook_deliveries)
                .where(webhook_deliveries.c.state == "queued")
            ).scalar_one()
            if queued >= max_queued:
                return False
            connection.execute(
                webhook_deliveries.insert().values(
                    agent_name=agent_name,
                    url=url,
                    body=body,
                    attempts=0,
                    next_attempt_at=now,
                    state="queued",
                    last_error="",
                    created_at=now,
                )
            )
        return True

    def claim_deliveries(self, *, now: float, limit: int, hold_s: float) -> list[Delivery]:
        """Take up to ``limit`` due deliveries for ``hold_s`` seconds, for this sender only.

        Their next attempt moves to ``now + hold_s``, so another replica's sender
        skips them; a sender that dies leaves them due again after ``hold_s``.
        """
        # A read first, so that a sender with nothing due (nearly always) takes no write
        # lock: on SQLite every pull's transaction queues behind the one writer.
        with self._raw_tx(write=False) as cursor:
            cursor.execute(self._sql.deliveries_due, (now,))
            if cursor.fetchone() is None:
                return []
        due = and_(
            webhook_deliveries.c.state == "queued",
            webhook_deliveries.c.next_attempt_at <= now,
        )
        query = select(webhook_deliveries).where(due).order_by(webhook_deliveries.c.id).limit(limit)
        if self.backend is Backend.POSTGRESQL:
            query = query.with_for_update(skip_locked=True)
        with self._tx() as connection:
            rows = connection.execute(query).all()
            if rows:
                connection.execute(
                    update(webhook_deliveries)
                    .where(webhook_deliveries.c.id.in_([r.id for r in rows]))
                    .values(next_attempt_at=now + hold_s)
                )
        return [Delivery(r.id, r.agent_name, r.url, bytes(r.body), r.attempts) for r in rows]

    def delivery_attempted(
        self, delivery_id: int, *, state: str, error: str, next_attempt_at: float
    ) -> None:
        """Record an attempt: ``state`` delivered, queued (retry at ``next_attempt_at``), failed."""
        with self._tx() as connection:
            connection.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.id == delivery_id)
                .values(
                    attempts=webhook_deliveries.c.attempts + 1,
                    state=state,
                    last_error=error,
                    next_attempt_at=next_attempt_at,
                )
            )

    def deliveries(self) -> list[Mapping[str, Any]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(webhook_deliveries).order_by(webhook_deliveries.c.id)
            ).all()
        return [dict(row._mapping) for row in rows]


def _result(row: Any) -> ResultRecord:
    return ResultRecord(
        agent_name=row.name,
        replica=row.replica,
        started_at=row.started_at,
        appraised_at=row.appraised_at,
        status=row.status,
        reason=row.reason,
        ear=row.ear,
        log_length=row.log_length,
    )
