"""Build a tenant's clients and ledger from its settings. Secrets are resolved here and nowhere else."""
from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy.exc import SQLAlchemyError

from atx.settings import SettingsError, TenantSettings, atx_home
from clients.autotask import AutotaskClient, HourlyThreshold, ZoneBook
from clients.limits import CallLimits
from clients.xero import XeroEndpoints, XeroGateway
from ledger import Ledger, LedgerCallUsage, LedgerTokenStore, TokenCipher
from ledger.audit import TenantAuditSink
from ledger.limits import LedgerLimits
from atx.limits import POLL_SECONDS, PrefectLimits
from ledger.store import engine_for_url

_ledgers: dict[str, Ledger] = {}
_ledgers_lock = threading.RLock()


def ledger_connector(settings: TenantSettings) -> SqlAlchemyConnector:
    """The prefect-sqlalchemy block that reaches the ledger: a saved block, or SQLite under ATX_HOME."""
    if settings.ledger_block:
        return SqlAlchemyConnector.load(settings.ledger_block)
    path = atx_home() / "ledger.db"
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqlAlchemyConnector(connection_info=ConnectionComponents(driver="sqlite+pysqlite", database=str(path)))


def _ledger_key(settings: TenantSettings) -> str:
    return settings.ledger_url or settings.ledger_block or str(atx_home())


def ledger_for(settings: TenantSettings) -> Ledger:
    key = _ledger_key(settings)
    with _ledgers_lock:
        if key not in _ledgers:
            if settings.ledger_url:
                _ledgers[key] = Ledger(engine_for_url(settings.ledger_url))
            else:
                _ledgers[key] = Ledger.from_connector(ledger_connector(settings))
        return _ledgers[key]


def autotask_client(settings: TenantSettings) -> AutotaskClient:
    """A new Autotask client. Its per-endpoint slots are kept in the ledger (so every client of the integration,
    in every process that shares the ledger, keeps Autotask's three at once together), and it watches the
    database's rolling hour with every other client of the same Autotask account in this process."""
    a = settings.autotask
    clock, sleep = _time
    return AutotaskClient(
        username=a.username,
        secret=_secret(a.secret),
        integration_code=a.integration_code,
        zone_lookup_url=a.zone_lookup_url,
        base_url=a.base_url,
        timeout=a.timeout_seconds,
        sleep=sleep,
        clock=clock.monotonic,
        limits=call_limits(settings),
        hourly=_hourly_threshold(settings.autotask_connection),
        audit=audit_sink(settings),
        zones=_zones,
    )


def xero_endpoints(settings: TenantSettings) -> XeroEndpoints:
    return XeroEndpoints.at(settings.xero.api_base) if settings.xero.api_base else XeroEndpoints()


_gateways: dict[str, XeroGateway] = {}


# ---- time for the tenants' gateways ------------------------------------------------------------------
class Clock(Protocol):
    """What a gateway reads time from (sandbox.clock's clocks are ones)."""

    def now(self) -> datetime:
        """An aware datetime: which UTC day a call counts in, and when the call limits' slots come free."""

    def monotonic(self) -> float:
        """Seconds: how long settings are remembered, and the age of Autotask's threshold readings."""


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


_time: tuple[Clock, Callable[[float], None]] = (_SystemClock(), time.sleep)
_limits: dict[str, CallLimits] = {}
_hourly: dict[str, HourlyThreshold] = {}
# Where each Autotask API user's database is: one lookup a process (an hour at most), not one a client.
_zones = ZoneBook(clock=lambda: _time[0].monotonic())


CALL_LIMITS_ENV = "ATX_CALL_LIMITS"


def call_limits(settings: TenantSettings) -> CallLimits:
    """The call limits the tenant's clients keep (Xero's per organisation, Autotask's per endpoint), shared by
    every process, worker and tenant that keeps them in the same place: Prefect's global concurrency limits
    when ATX_CALL_LIMITS=prefect (every deployment of prefect.yaml sets it), else the tenant's ledger
    database. They read the chosen clock (`use_clock`) and wait with its sleep."""
    where = os.environ.get(CALL_LIMITS_ENV, "ledger").strip().lower() or "ledger"
    if where not in ("ledger", "prefect"):
        raise SettingsError(f"{CALL_LIMITS_ENV}={where!r}: say 'prefect' (Prefect's global concurrency limits) "
                            "or 'ledger' (the ledger database)")
    key = "prefect" if where == "prefect" else _ledger_key(settings)
    ledger = None if where == "prefect" else ledger_for(settings)
    with _ledgers_lock:
        if key not in _limits:
            clock, sleep = _time
            now = lambda: clock.now().timestamp()  # noqa: E731
            if ledger is None:
                # A compressed clock asks Prefect again as often in wall time as the system clock does.
                _limits[key] = PrefectLimits(now=now, sleep=sleep, poll=POLL_SECONDS * getattr(clock, "speed", 1.0))
            else:
                _limits[key] = LedgerLimits(ledger, now=now, sleep=sleep)
        return _limits[key]


def _hourly_threshold(connection: str) -> HourlyThreshold:
    """One watch of the rolling hour per Autotask account (its database) in this process."""
    with _ledgers_lock:
        if connection not in _hourly:
            _hourly[connection] = HourlyThreshold(clock=_time[0].monotonic)
        return _hourly[connection]


class _ClockChoice:
    """use_clock's answer: already applied; as a context manager, puts the previous choice back at exit."""

    def __init__(self, previous: tuple[Clock, Callable[[float], None]]):
        self._previous = previous

    def __enter__(self) -> "_ClockChoice":
        return self

    def __exit__(self, *exc) -> None:
        _choose(self._previous)


def use_clock(clock: Clock | None = None, *, sleep: Callable[[float], None] | None = None) -> _ClockChoice:
    """Give the tenants' Xero gateways this clock and, if given, this sleep (default: the system's).

    The day of the daily call budget is `clock.now()`'s UTC day and calls are paced on `clock.monotonic()`;
    `sleep` is how the gateway waits (a test passes `ManualClock.advance`, so waits move the sandbox's time
    instead of the test's); Autotask clients wait with it too, and the shared call limits (`call_limits`)
    count on it. It applies at once to every gateway built afterwards: cached gateways are forgotten. Use
    it as a context manager to put the previous clock back at exit, or call
    `use_clock()` to go back to the system clock."""
    previous = _time
    _choose((clock or _SystemClock(), sleep or time.sleep))
    return _ClockChoice(previous)


def _choose(choice: tuple[Clock, Callable[[float], None]]) -> None:
    global _time
    with _ledgers_lock:
        _time = choice
        for name in list(_gateways):
            _forget(_gateways.pop(name))
        for limits in _limits.values():
            if isinstance(limits, PrefectLimits):
                limits.close()
        _limits.clear()
        _hourly.clear()
        _zones.forget()  # kept on the old clock's time


def xero_gateway(settings: TenantSettings) -> XeroGateway:
    """One gateway per tenant and process, so every task shares its pacing budget and call count."""
    with _ledgers_lock:
        if settings.name not in _gateways:
            _gateways[settings.name] = _new_gateway(settings)
        return _gateways[settings.name]


def forget_clients(tenant: str | None = None) -> None:
    """Drop cached gateways (after reconnecting, or between tests), giving back the calls they took from
    the daily budget and did not make; without a tenant, the Autotask zones kept for the process too (a
    sandbox started later may listen on a port an earlier one had, under the same API user)."""
    with _ledgers_lock:
        for name in [tenant] if tenant else list(_gateways):
            _forget(_gateways.pop(name, None))
        if tenant is None:
            _zones.forget()


def _forget(gateway: XeroGateway | None) -> None:
    if gateway is None:
        return
    try:
        gateway.settle_calls()
    except SQLAlchemyError:  # a ledger gone away keeps a few calls counted, never fewer: the safe side
        pass


def _new_gateway(settings: TenantSettings) -> XeroGateway:
    """The tenant's gateway: its token set and its daily call budget both live in the ledger database, so
    every process (and every tenant of the same organisation) shares them."""
    x = settings.xero
    ledger = ledger_for(settings)
    clock, sleep = _time
    return XeroGateway(
        client_id=x.client_id,
        client_secret=_secret(x.client_secret),
        tenant_id=x.tenant_id,
        token_store=token_store(settings),
        endpoints=xero_endpoints(settings),
        calls_per_minute=x.calls_per_minute,
        max_in_flight=x.max_in_flight,
        timeout=x.timeout_seconds,
        connection_name=settings.token_connection,
        settings_ttl_seconds=120,
        daily_call_budget=x.daily_call_budget,
        call_usage=LedgerCallUsage(ledger),
        now=clock.now,
        clock=clock.monotonic,
        sleep=sleep,
        limits=call_limits(settings),
        audit=audit_sink(settings),
    )


# ---- the audit trail ----------------------------------------------------------------------------------------
def audit_sink(settings: TenantSettings) -> TenantAuditSink:
    """Where the tenant's clients record their writes: its ledger, under the Prefect flow run each is made in."""
    return ledger_for(settings).audit.sink(settings.name, current_run_id)


def current_run_id() -> str | None:
    """The Prefect flow run this code runs in (a task's flow run within a task), None outside any run."""
    from prefect.runtime import flow_run

    return flow_run.id


# ---- the key of the token sets at rest ------------------------------------------------------------------
TOKEN_KEY_ENV = "ATX_TOKEN_KEY"
TOKEN_KEY_BLOCK = "atx-token-key"


def token_store(settings: TenantSettings) -> LedgerTokenStore:
    """The tenant's Xero token set, in its ledger, sealed with its token key."""
    return LedgerTokenStore(ledger_for(settings), settings.token_connection, token_cipher(settings))


def token_key_ref(settings: TenantSettings) -> str:
    """Where the key sealing the tenant's tokens lives: the tenant's `xero.token_key`, else ATX_TOKEN_KEY when
    it is set, else the Prefect Secret block atx-token-key (made on first use: see token_keys)."""
    if settings.xero.token_key:
        return settings.xero.token_key
    return f"env:{TOKEN_KEY_ENV}" if os.environ.get(TOKEN_KEY_ENV) else f"block:{TOKEN_KEY_BLOCK}"


def token_cipher(settings: TenantSettings) -> TokenCipher:
    ref = token_key_ref(settings)
    # The keys are fetched when a token is first opened or sealed, not when a gateway is built.
    return TokenCipher(lambda: token_keys(ref), source=f"the token key {ref}")


def token_keys(ref: str) -> list[str]:
    """The Fernet keys a reference holds, newest first (commas or spaces between them), checked."""
    if ref == f"block:{TOKEN_KEY_BLOCK}":
        text = _default_token_key()
    else:
        text = _secret(ref)
    keys = [k for k in re.split(r"[\s,]+", text) if k]
    if not keys or not all(TokenCipher.is_key(k) for k in keys):
        raise SettingsError(
            f"the token key {ref} must hold Fernet keys (each 32 url-safe base64-encoded bytes); make one with "
            "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`, "
            "or restore the key the token sets were saved with")
    return keys


def _default_token_key() -> str:
    """The Prefect Secret block atx-token-key, made with a new key when no token was ever sealed here: the key
    stays with Prefect, out of the ledger database and out of every file."""
    from prefect.blocks.system import Secret

    try:
        return Secret.load(TOKEN_KEY_BLOCK).get()
    except ValueError:  # no such block yet
        pass
    try:
        # Never overwritten: another process may have made it first, and its key already sealed a token.
        Secret(value=TokenCipher.new_key()).save(TOKEN_KEY_BLOCK)
    except ValueError:
        pass
    return Secret.load(TOKEN_KEY_BLOCK).get()


def _secret(ref: str) -> str:
    from atx.settings import SecretRef

    return SecretRef(ref).resolve()


def save_ledger_block(name: str, *, driver: str, database: str, host: str | None = None, port: int | None = None,
                      username: str | None = None, password: str | None = None, tenants: list[str] = ()) -> None:
    """The ledger's connector block, password as a SecretStr: a URL string would store it unmasked."""
    from pydantic import SecretStr

    from atx.settings import load_tenant, save_tenant

    components = ConnectionComponents(
        driver=driver, database=database, host=host, port=port, username=username,
        password=SecretStr(password) if password else None,
    )
    SqlAlchemyConnector(connection_info=components).save(name, overwrite=True)
    for tenant in tenants:
        settings = load_tenant(tenant)
        save_tenant(settings.model_copy(update={"ledger_block": name, "ledger_url": None}))
