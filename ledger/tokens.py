"""Xero token sets, kept in the ledger database, with one refresh at a time per connection.

A refresh token is single use: two processes refreshing with the same one is how a connection is lost.
`locked()` takes a database lock on the connection's row (SELECT ... FOR UPDATE on PostgreSQL, a write
transaction on SQLite), so every process and worker sharing the ledger waits its turn; inside it,
`load` re-reads and `save` writes through the locked transaction and commits at once, so the new
refresh token is durable before anyone uses it.
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from datetime import datetime, timezone

from sqlalchemy import insert, select, update

from ledger.models import StoredToken


def _now() -> datetime:
    return datetime.now(timezone.utc)


class LedgerTokenStore:
    """Keeps one Xero connection's token set in the ledger database (never in a repo file)."""

    def __init__(self, ledger, connection: str):
        self._ledger = ledger
        self.connection = connection
        # The locked transaction belongs to the thread that took it; other threads read outside it.
        self._held = threading.local()

    def load(self) -> dict | None:
        conn = getattr(self._held, "conn", None)
        if conn is not None:
            text = conn.execute(select(StoredToken.token_json).where(StoredToken.connection == self.connection)).scalar()
            return json.loads(text) if text else None
        with self._ledger.session() as s:
            row = s.get(StoredToken, self.connection)
            return json.loads(row.token_json) if row else None

    def last_saved(self) -> datetime | None:
        """When the token set was last saved (each refresh saves the new refresh token; so does a connect),
        in UTC; None when none is stored."""
        with self._ledger.session() as s:
            row = s.get(StoredToken, self.connection)
            if row is None or row.updated_at is None:
                return None
            moment = row.updated_at
            return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment

    def save(self, token: dict) -> None:
        conn = getattr(self._held, "conn", None)
        if conn is not None:
            self._write(conn, token)
            conn.commit()
            return
        with self._ledger.engine.connect() as c:
            self._write(c, token)
            c.commit()

    def delete(self) -> None:
        with self._ledger.session() as s:
            row = s.get(StoredToken, self.connection)
            if row is not None:
                s.delete(row)
                s.commit()

    def _write(self, conn, token: dict) -> None:
        text = json.dumps(token)
        done = conn.execute(
            update(StoredToken).where(StoredToken.connection == self.connection).values(token_json=text, updated_at=_now())
        )
        if done.rowcount == 0:
            conn.execute(insert(StoredToken).values(connection=self.connection, token_json=text, updated_at=_now()))

    @contextlib.contextmanager
    def locked(self) -> Iterator["LedgerTokenStore"]:
        """Hold this connection's refresh lock (across processes) until the block ends."""
        if getattr(self._held, "conn", None) is not None:
            yield self  # re-entered by the same thread: it already holds the lock
            return
        engine = self._ledger.engine
        with engine.connect() as conn:
            if engine.dialect.name == "sqlite":
                # SQLite locks the whole file; BEGIN IMMEDIATE makes other writers wait (busy_timeout) here.
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                conn.execute(
                    select(StoredToken.connection).where(StoredToken.connection == self.connection).with_for_update()
                )
            self._held.conn = conn
            try:
                yield self
                if conn.in_transaction():
                    conn.commit()
            except BaseException:
                if conn.in_transaction():
                    conn.rollback()
                raise
            finally:
                self._held.conn = None

    def __repr__(self) -> str:  # never show the token
        return f"LedgerTokenStore(connection={self.connection!r})"
