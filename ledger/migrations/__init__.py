"""The ledger's schema migrations (Alembic), run by `Ledger` when it starts: `upgrade(engine)`.

Revisions live in versions/ and ship with the package. Every start brings the database to the newest:
- a new database is upgraded from empty;
- a database made by a release before Alembic (the tables, no alembic_version) is stamped with
  revision 0001, which is exactly the schema those releases made, then upgraded;
- a database already at the newest revision costs one read, and takes no lock.

Several processes (flows, workers, pytest-xdist) may open one ledger at once, so the upgrade runs in one
transaction under a lock the database holds for all of them: `pg_advisory_xact_lock` on PostgreSQL,
`BEGIN IMMEDIATE` (a write lock on the file; others wait up to busy_timeout) on SQLite. The second opener
waits, then finds the schema at the newest revision and does nothing. Within a process, a lock keeps
Alembic's module-level context to one migration at a time.

A new revision: change ledger/models.py, then (against a database at the current head)
    from alembic import command; from ledger.migrations import config
    command.revision(config(url="sqlite:///ledger.db"), "what changes and why", autogenerate=True)
and review the file (data moves by hand; SQLite needs `op.batch_alter_table` for renames and type changes).
`command.check(config(url=...))` says whether a database at head and the models agree.
"""
from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.types import DateTime, String, Text

_HERE = Path(__file__).resolve().parent
# The revision a database made before Alembic is at (see versions/0001_invoice_ledger.py).
BASELINE = "0001"
# Any constant shared by every process: the advisory lock taken while the ledger's schema changes.
_PG_LOCK_KEY = 7_460_124_650_201_117_001
_process_lock = threading.Lock()
_LEGACY_TABLES = ("sync_ledger", "sync_watermark", "xero_token")
# Nullable columns the releases before Alembic added on start when missing (their `_add_missing_columns`):
# a database made by an even older release gets them before it is stamped with the baseline.
_LEGACY_LATE_COLUMNS = {
    "xero_contact_id": String(64),
    "xero_status": String(20),
    "xero_total": String(40),
    "attached_at": DateTime(timezone=True),
    "attention": Text(),
}


class LedgerTooNew(RuntimeError):
    """The database was migrated by a newer release than this one."""


def config(connection: Connection | None = None, *, url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(_HERE))
    if url:
        cfg.set_main_option("sqlalchemy.url", url)
    cfg.attributes["connection"] = connection
    return cfg


_known: tuple[str, frozenset[str]] | None = None
_known_lock = threading.Lock()


def _revisions() -> tuple[str, frozenset[str]]:
    """The head revision and every revision this release ships, read from versions/ once per process."""
    global _known
    with _known_lock:
        if _known is None:
            scripts = ScriptDirectory.from_config(config())
            _known = (scripts.get_current_head(), frozenset(r.revision for r in scripts.walk_revisions()))
        return _known


def head() -> str:
    return _revisions()[0]


def current(conn: Connection) -> tuple[str, ...]:
    """The revisions the database is at (empty: new, or made before Alembic)."""
    return tuple(MigrationContext.configure(conn).get_current_heads())


def upgrade(engine: Engine) -> None:
    """Bring the ledger's schema to the newest revision, once, whoever else is doing the same."""
    with engine.connect() as conn:
        if _at_head(current(conn)):
            return
    with _process_lock, engine.connect() as conn:
        _lock(conn)  # begins the transaction every step below runs in
        heads = current(conn)
        if not _at_head(heads):  # another process may have finished it while we waited
            if not heads and _has_legacy_tables(conn):
                _complete_legacy(conn)
                command.stamp(config(conn), BASELINE)
            command.upgrade(config(conn), "head")
        conn.commit()


def _at_head(heads: tuple[str, ...]) -> bool:
    if not heads:
        return False
    newest, known = _revisions()
    for rev in heads:
        if rev not in known:
            raise LedgerTooNew(
                f"the ledger database is at revision {rev}, which this release does not know: a newer release "
                "migrated it. Upgrade this installation (or point it at another database)."
            )
    return heads == (newest,)


def _lock(conn: Connection) -> None:
    dialect = conn.dialect.name
    if dialect == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    elif dialect == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        conn.begin()


def _has_legacy_tables(conn: Connection) -> bool:
    tables = set(inspect(conn).get_table_names())
    return any(t in tables for t in _LEGACY_TABLES)


def _complete_legacy(conn: Connection) -> None:
    """Bring a pre-Alembic ledger to exactly the baseline: the nullable columns it may lack."""
    existing = {c["name"] for c in inspect(conn).get_columns("sync_ledger")}
    for name, kind in _LEGACY_LATE_COLUMNS.items():
        if name not in existing:
            conn.execute(text(f"ALTER TABLE sync_ledger ADD COLUMN {name} {kind.compile(dialect=conn.dialect)}"))
