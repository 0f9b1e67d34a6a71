"""Build a tenant's clients and ledger from its settings. Secrets are resolved here and nowhere else."""
from __future__ import annotations

import threading

from prefect_sqlalchemy import ConnectionComponents, SqlAlchemyConnector

from atx.settings import TenantSettings, atx_home
from clients.autotask import AutotaskClient
from clients.xero import XeroEndpoints, XeroGateway
from ledger import Ledger, LedgerTokenStore
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
    )


def xero_endpoints(settings: TenantSettings) -> XeroEndpoints:
    return XeroEndpoints.at(settings.xero.api_base) if settings.xero.api_base else XeroEndpoints()


_gateways: dict[str, XeroGateway] = {}


def xero_gateway(settings: TenantSettings) -> XeroGateway:
    """One gateway per tenant and process, so every task shares its pacing budget and call count."""
    with _ledgers_lock:
        if settings.name not in _gateways:
            _gateways[settings.name] = _new_gateway(settings)
        return _gateways[settings.name]


def forget_clients(tenant: str | None = None) -> None:
    """Drop cached gateways (after reconnecting, or between tests)."""
    with _ledgers_lock:
        for name in [tenant] if tenant else list(_gateways):
            _gateways.pop(name, None)


def _new_gateway(settings: TenantSettings) -> XeroGateway:
    x = settings.xero
    return XeroGateway(
        client_id=x.client_id,
        client_secret=_secret(x.client_secret),
        tenant_id=x.tenant_id,
        token_store=LedgerTokenStore(ledger_for(settings), settings.token_connection),
        endpoints=xero_endpoints(settings),
        calls_per_minute=x.calls_per_minute,
        max_in_flight=x.max_in_flight,
        connection_name=settings.token_connection,
        settings_ttl_seconds=120,
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
