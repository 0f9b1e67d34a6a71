"""How long Xero's refresh token has gone unused, and the warning before it dies. Pure: no database.

Xero's refresh token rotates on every refresh, and one left unused for 60 days expires: the connection is
then lost until someone runs `atx connect xero` again. The ledger keeps when the token set was last saved
(every refresh saves the new one, and so does `atx connect`); 45 days after that, `atx check` and every
run warn, naming the day by which a sync (which refreshes it) or a new connection must happen.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

EXPIRES_AFTER = timedelta(days=60)   # Xero: "unused refresh tokens expire after 60 days"
WARN_AFTER = timedelta(days=45)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def refresh_token_warning(last_used: datetime | None, now: datetime, tenant: str) -> str | None:
    """The warning when the refresh token saved at `last_used` has gone unused for 45 days or more; None
    when it is younger, or when no token set is stored (the connection check reports that)."""
    if last_used is None:
        return None
    age = _utc(now) - _utc(last_used)
    if age < WARN_AFTER:
        return None
    dies = _utc(last_used) + EXPIRES_AFTER
    if age >= EXPIRES_AFTER:
        return (f"the Xero refresh token was last used on {_utc(last_used).date().isoformat()}, {age.days} days ago, "
                f"and Xero expires it after 60 days unused: run `atx connect xero --tenant {tenant}`")
    return (f"the Xero refresh token has not been used for {age.days} days (since "
            f"{_utc(last_used).date().isoformat()}) and Xero expires it after 60: run any sync or "
            f"`atx connect xero --tenant {tenant}` before {dies.date().isoformat()}")
