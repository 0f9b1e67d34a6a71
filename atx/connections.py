"""Build a tenant's clients and ledger from its settings. Secrets are resolved here and nowhere else."""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector
from sqlalchemy.exc import SQLAlchemyError

from atx.settings import TenantSettings, atx_home
from clients.autotask import AutotaskClient
from clients.xero import XeroEndpoints, XeroGateway
from ledger import Ledger, LedgerCallUsage, LedgerTokenStore
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


def ledger_for(settings: TenantSettings) -> Ledger:
    key = settings.ledger_url or settings.ledger_block or str(atx_home())
    with _ledgers_lock:
        if key not in _ledgers:
            if settings.ledger_url:
                _ledgers[key] = Ledger(engine_for_url(settings.ledger_url))
            else:
                _ledgers[key] = Ledger.from_connector(ledger_connector(settings))
        return _ledgers[key]


def autotask_client(settings: TenantSettings) -> AutotaskClient:
    a = settings.autotask
    return AutotaskClient(
        username=a.username,
        secret=_secret(a.secret),
        integration_code=a.integration_code,
        zone_lookup_url=a.zone_lookup_url,
        base_url=a.base_url,
        timeout=a.timeout_seconds,
    )


def xero_endpoints(settings: TenantSettings) -> XeroEndpoints:
    return XeroEndpoints.at(settings.xero.api_base) if settings.xero.api_base else XeroEndpoints()


_gateways: dict[str, XeroGateway] = {}


# ---- time for the tenants' gateways ------------------------------------------------------------------
class Clock(Protocol):
    """What a gateway reads time from (sandbox.clock's clocks are ones)."""

    def now(self) -> datetime:
        """An aware datetime: which UTC day a call counts in."""

    def monotonic(self) -> float:
        """Seconds: how calls are paced."""


class _SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def monotonic(self) -> float:
        return time.monotonic()


_time: tuple[Clock, Callable[[float], None]] = (_SystemClock(), time.sleep)


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
    instead of the test's). It applies at once to every gateway built afterwards: cached gateways are
    forgotten. Use it as a context manager to put the previous clock back at exit, or call
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


def xero_gateway(settings: TenantSettings) -> XeroGateway:
    """One gateway per tenant and process, so every task shares its pacing budget and call count."""
    with _ledgers_lock:
        if settings.name not in _gateways:
            _gateways[settings.name] = _new_gateway(settings)
        return _gateways[settings.name]


def forget_clients(tenant: str | None = None) -> None:
    """Drop cached gateways (after reconnecting, or between tests), giving back the calls they took from
    the daily budget and did not make."""
    with _ledgers_lock:
        for name in [tenant] if tenant else list(_gateways):
            _forget(_gateways.pop(name, None))


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
        token_store=LedgerTokenStore(ledger, settings.token_connection),
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
    )


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
