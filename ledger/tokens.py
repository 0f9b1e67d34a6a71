"""Xero token sets, kept encrypted in the ledger database, with one refresh at a time per connection.

A refresh token is single use: two processes refreshing with the same one is how a connection is lost.
`locked()` takes a database lock on the connection's row (SELECT ... FOR UPDATE on PostgreSQL, a write
transaction on SQLite), so every process and worker sharing the ledger waits its turn; inside it,
`load` re-reads and `save` writes through the locked transaction and commits at once, so the new
refresh token is durable before anyone uses it.

At rest a token set is one Fernet token (`TokenCipher`): whoever reads the database, a backup or a dump
reads no token without the key, which lives elsewhere (an environment variable or a Prefect Secret block,
chosen by atx/connections.py). A row written by a release from before the encryption (plain JSON) is read
as it is and sealed at once.
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import insert, select, update

from ledger.models import StoredToken, aware, utc_now



class TokenCipher:
    """Seals token sets for the ledger and opens them again.

    `keys` are Fernet keys, newest first (or a function giving them, called on first use, so a key kept in a
    Prefect block is fetched only when a token is read or written): the first seals, every one opens. To
    rotate, put a new key first and keep the old one until every token set has been saved again (each
    refresh saves it). `source` says where the keys come from, for messages; the keys are never shown."""

    def __init__(self, keys: Sequence[str | bytes] | Callable[[], Sequence[str | bytes]], *, source: str = "the token key"):
        self._keys = keys
        self.source = source
        self._fernet: MultiFernet | None = None
        self._lock = threading.Lock()

    @staticmethod
    def new_key() -> str:
        return Fernet.generate_key().decode()

    @staticmethod
    def is_key(text: str) -> bool:
        try:
            Fernet(text)
        except ValueError:
            return False
        return True

    @staticmethod
    def is_sealed(text: str) -> bool:
        # The releases before encryption stored the token set as a JSON object; a Fernet token is base64.
        return not text.lstrip().startswith("{")

    def seal(self, token: dict) -> str:
        return self._multi().encrypt(json.dumps(token).encode()).decode()

    def open(self, text: str) -> dict:
        """The token set in `text`; raises InvalidToken when none of the keys sealed it."""
        if not self.is_sealed(text):
            return json.loads(text)
        return json.loads(self._multi().decrypt(text.encode()))

    def _multi(self) -> MultiFernet:
        with self._lock:
            if self._fernet is None:
                keys = self._keys() if callable(self._keys) else self._keys
                self._fernet = MultiFernet([Fernet(key) for key in keys])
            return self._fernet

    def __repr__(self) -> str:
        return f"TokenCipher(source={self.source!r})"


class LedgerTokenStore:
    """Keeps one Xero connection's token set in the ledger database (never in a repo file), sealed by `cipher`."""

    def __init__(self, ledger, connection: str, cipher: TokenCipher):
        self._ledger = ledger
        self.connection = connection
        self.cipher = cipher
        # The locked transaction belongs to the thread that took it; other threads read outside it.
        self._held = threading.local()

    def load(self) -> dict | None:
        conn = getattr(self._held, "conn", None)
        if conn is not None:
            return self._load(conn)
        with self._ledger.engine.connect() as c:
            token = self._load(c)
            c.commit()
            return token

    def last_saved(self) -> datetime | None:
        """When the token set was last saved (each refresh saves the new refresh token; so does a connect),
        in UTC; None when none is stored."""
        with self._ledger.session() as s:
            row = s.get(StoredToken, self.connection)
            if row is None or row.updated_at is None:
                return None
            return aware(row.updated_at)

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

    def _load(self, conn) -> dict | None:
        text = conn.execute(select(StoredToken.token_json).where(StoredToken.connection == self.connection)).scalar()
        if not text:
            return None
        try:
            token = self.cipher.open(text)
        except InvalidToken:
            raise self._unreadable() from None
        if not self.cipher.is_sealed(text):
            # Sealed in place, only if no one replaced it meanwhile; updated_at stays, since it says when the
            # refresh token was last saved (the token-age warning reads it).
            conn.execute(update(StoredToken)
                         .where(StoredToken.connection == self.connection, StoredToken.token_json == text)
                         .values(token_json=self.cipher.seal(token)))
        return token

    def _unreadable(self) -> Exception:
        # Imported here: the ledger package must not load the Xero SDK for this one error type.
        from clients.xero import RECONNECT_HINT, XeroAuthError

        return XeroAuthError(
            f"the stored Xero token set of connection {self.connection!r} cannot be opened with {self.cipher.source} "
            "(the key was lost or changed): put the key back, or " + RECONNECT_HINT.format(tenant=self.connection))

    def _write(self, conn, token: dict) -> None:
        text = self.cipher.seal(token)
        done = conn.execute(
            update(StoredToken).where(StoredToken.connection == self.connection).values(token_json=text, updated_at=utc_now())
        )
        if done.rowcount == 0:
            conn.execute(insert(StoredToken).values(connection=self.connection, token_json=text, updated_at=utc_now()))

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
