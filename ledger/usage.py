"""The daily Xero call count of each organisation, kept in the ledger database so that every process,
worker and tenant of one organisation draws on one count (the `CallUsageStore` of clients/xero.py).

Gateways take calls from the count a few at a time (`take`) and give back the ones they did not use
(`give_back`). A take is one conditional UPDATE, `calls = calls + n WHERE calls <= budget - n`, which the
database applies atomically (SQLite's write lock; PostgreSQL re-checks the condition on the row it locks),
so two processes can neither lose each other's calls nor pass the budget together, without a lock held
across any call to Xero.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from core.call_budget import calls_to_take
from ledger.models import XeroCallUsage, utc_now

# A take loses to other processes' takes at most this often before it settles for what is left.
_ATTEMPTS = 20



class LedgerCallUsage:
    def __init__(self, ledger):
        self._ledger = ledger

    def used(self, tenant_id: str, day: date) -> int:
        """Calls counted for the organisation on that UTC day (taken by gateways, not given back)."""
        with self._ledger.engine.connect() as conn:
            return int(conn.execute(self._calls(tenant_id, day)).scalar() or 0)

    def take(self, tenant_id: str, day: date, calls: int, budget: int) -> int:
        """Add up to `calls` to the day's count without passing `budget`; returns how many were added
        (0: the budget is used up)."""
        self._ensure_row(tenant_id, day)
        table = XeroCallUsage.__table__
        for _ in range(_ATTEMPTS):
            grant = calls_to_take(calls, self.used(tenant_id, day), budget)
            if grant == 0:
                return 0
            # The UPDATE is its own short transaction: its condition, not the read above, decides.
            with self._ledger.engine.begin() as conn:
                done = conn.execute(
                    update(table)
                    .where(table.c.tenant_id == tenant_id, table.c.day == day, table.c.calls <= budget - grant)
                    .values(calls=table.c.calls + grant, updated_at=utc_now())
                )
                if done.rowcount == 1:
                    return grant
        return 0  # the others kept taking what was left: treat it as used up

    def give_back(self, tenant_id: str, day: date, calls: int) -> None:
        """Calls taken but never made (a run ended with some left): the day's count goes down by them."""
        if calls <= 0:
            return
        table = XeroCallUsage.__table__
        with self._ledger.engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.tenant_id == tenant_id, table.c.day == day, table.c.calls >= calls)
                .values(calls=table.c.calls - calls, updated_at=utc_now())
            )

    def _ensure_row(self, tenant_id: str, day: date) -> None:
        with self._ledger.engine.connect() as conn:
            if conn.execute(self._calls(tenant_id, day)).scalar() is not None:
                return
        try:
            with self._ledger.engine.begin() as conn:
                conn.execute(insert(XeroCallUsage.__table__).values(tenant_id=tenant_id, day=day, calls=0,
                                                                    updated_at=utc_now()))
        except IntegrityError:
            pass  # another process inserted the day's row first: it is there either way

    @staticmethod
    def _calls(tenant_id: str, day: date):
        return select(XeroCallUsage.calls).where(XeroCallUsage.tenant_id == tenant_id, XeroCallUsage.day == day)

    def __repr__(self) -> str:
        return "LedgerCallUsage()"
