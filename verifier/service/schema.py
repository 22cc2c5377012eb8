"""The verifier service's tables and the ordered migrations that create them.

    from attestd.verifier.service.schema import migrate

    with engine.begin() as connection:
        version = migrate(connection)        # the schema version now in force

One SQLAlchemy Core ``MetaData`` describes the current schema for queries; the
database itself is changed only by :data:`MIGRATIONS`, applied in order at
start and recorded in ``schema_version``. A new migration is appended, never
edited, so every deployed database reaches the same schema by the same steps.
Times are stored as float seconds since the epoch (UTC): both backends compare
them exactly and no driver converts time zones behind our back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    inspect,
    select,
    text,
)

from attestd.verifier.errors import VerifierError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "SchemaTooNewError",
    "agents",
    "checkpoints",
    "leases",
    "metadata",
    "migrate",
    "nonces",
    "results",
    "schema_version",
    "status_changes",
    "webhook_deliveries",
]


class SchemaTooNewError(VerifierError):
    """The database was migrated by a newer attestd-verifier than this one."""

    reason = "schema_too_new"


metadata = MetaData()

schema_version = Table(
    "schema_version",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", Float, nullable=False),
)

agents = Table(
    "agents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("address", String(300), nullable=False),
    # TLS material and the policy are paths on the verifier's host: the policy
    # names further files (its simulated root, say) relative to itself.
    Column("cert_path", Text, nullable=False),
    Column("key_path", Text, nullable=False),
    Column("ca_path", Text, nullable=False),
    Column("server_name", String(300), nullable=False),
    Column("policy_path", Text, nullable=False),
    Column("interval_s", Float, nullable=False),
    # Push mode (migration 2): the SPKI pin of the agent's client certificate; "" for
    # an agent that is pulled.
    Column("push_pin", String(80), nullable=False, server_default=""),
    Column("status", String(40), nullable=False),
    Column("status_reason", Text, nullable=False),
    Column("registered_at", Float, nullable=False),
    Column("next_due_at", Float, nullable=False),
    Column("last_appraised_at", Float, nullable=True),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    # The verified prefix: its first `length` events replay to `head`. An agent's
    # later evidence must extend it; a shorter log or another head is a rollback or
    # a second agent, never silently accepted.
    Column("length", Integer, nullable=False),
    Column("head", LargeBinary(48), nullable=False),
    Column("updated_at", Float, nullable=False),
)

results = Table(
    "results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("replica", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("appraised_at", Float, nullable=False),
    Column("status", String(40), nullable=False),
    Column("reason", Text, nullable=False),
    Column("ear", Text, nullable=True),
    Column("log_length", Integer, nullable=True),
    Index("results_by_agent", "agent_id", "id"),
)

status_changes = Table(
    "status_changes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_id", Integer, nullable=False),  # kept after the agent is removed
    Column("agent_name", String(200), nullable=False),
    Column("at", Float, nullable=False),
    Column("old_status", String(40), nullable=False),
    Column("new_status", String(40), nullable=False),
    Column("reason", Text, nullable=False),
)

nonces = Table(
    "nonces",
    metadata,
    Column("nonce", LargeBinary(64), primary_key=True),
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
    Column("issued_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("consumed", Boolean, nullable=False),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("agent_name", String(200), nullable=False),
    Column("url", Text, nullable=False),
    Column("body", LargeBinary, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", Float, nullable=False),
    Column("state", String(20), nullable=False),  # queued, delivered, failed
    Column("last_error", Text, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("deliveries_due", "state", "next_attempt_at"),
)

leases = Table(
    "leases",
    metadata,
    Column("agent_id", Integer, ForeignKey("agents.id", ondelete="CASCADE"), primary_key=True),
    Column("owner", String(200), nullable=True),
    Column("expires_at", Float, nullable=False),
)


def _v1_initial(connection: Connection) -> None:
    tables = [
        agents,
        checkpoints,
        results,
        status_changes,
        nonces,
        webhook_deliveries,
        leases,
    ]
    metadata.create_all(connection, tables=tables)


def _v2_push_pin(connection: Connection) -> None:
    # _v1_initial creates the tables as this release defines them, push_pin included;
    # only a database created by the first release lacks the column.
    if "push_pin" not in {c["name"] for c in inspect(connection).get_columns("agents")}:
        connection.execute(
            text("ALTER TABLE agents ADD COLUMN push_pin VARCHAR(80) NOT NULL DEFAULT ''")
        )


Migration = Callable[[Connection], None]

MIGRATIONS: Sequence[Migration] = (_v1_initial, _v2_push_pin)
"""Migration ``i`` takes the schema from version ``i`` to ``i + 1``; append only."""

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: Connection, *, now: float) -> int:
    """Apply the migrations this database lacks, in order; the version reached.

    Run inside one transaction (``engine.begin()``) so that a failed step leaves
    the previous version intact. Refuses (SchemaTooNewError) a database that a
    newer release migrated, rather than writing rows it does not understand.
    """
    metadata.create_all(connection, tables=[schema_version])
    current = connection.execute(
        select(schema_version.c.version).order_by(schema_version.c.version.desc()).limit(1)
    ).scalar()
    version = int(current or 0)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(
            f"the database is at schema version {version}; this attestd-verifier knows "
            f"versions up to {SCHEMA_VERSION}"
        )
    for step in range(version, SCHEMA_VERSION):
        MIGRATIONS[step](connection)
        connection.execute(schema_version.insert().values(version=step + 1, applied_at=now))
    return SCHEMA_VERSION
