"""Both simulators together, running on loopback ports: what `atx sandbox serve`, `atx demo` and the
end-to-end tests start.

The stack also knows how to write a tenant file that points at itself, so the production code paths
(settings → clients → flows) are exercised unchanged: only base URLs and secrets differ.
"""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal

from sandbox.autotask import AutotaskSandbox, create_app as create_autotask_app, generate_data, load_data
from sandbox.clock import Clock, SystemClock
from sandbox.faults import FaultConfig, with_faults
from sandbox.serving import BackgroundServer
from sandbox.xero.app import create_app as create_xero_app
from sandbox.xero.state import XeroSandbox

XERO_CLIENT_ID = "SANDBOXCLIENT0000000000000000001"


@dataclass
class SandboxStack:
    seed: int = 7
    invoices: int = 40
    data_file: str | None = None
    host: str = "127.0.0.1"
    autotask_port: int | None = None
    xero_port: int | None = None
    clock: Clock = field(default_factory=SystemClock)
    org_name: str = "Demo MSP Ltd"
    org_country: str = "NZ"
    window_end: date | None = None
    history_days: int = 30          # the generated invoices and purchasing spread over this many days
    filter_cases: bool = False      # add the filter and contact cases (generator._filter_cases)
    rounding_cases: bool = False    # add the four-decimal tax cases INV-R001.. (generator._tax_rounding_cases)
    # The MSP's books before its first sync: Xero already holds its first customer and two items.
    existing_books: bool = False
    # Fault injection, off by default: a share of 429/500/503, timeouts, drops and lost responses.
    # Both are live: change them with .configure/.rule/.script while the stack runs, or swap them with
    # set_faults(); fault_counts() says what fired.
    autotask_faults: FaultConfig = field(default_factory=FaultConfig)
    xero_faults: FaultConfig = field(default_factory=FaultConfig)
    # Seconds each API request takes to answer (real time, 0 = as fast as possible). With it, requests
    # that overlap stay in flight together, so Autotask's three threads per endpoint and Xero's five
    # calls in flight can be exceeded. Also settable later: stack.autotask.request_latency, stack.xero.latency.
    autotask_latency: float = 0.0
    xero_latency: float = 0.0

    def __post_init__(self):
        end = self.window_end or date.today()
        if self.data_file:
            data = load_data(self.data_file)
        else:
            data = generate_data(seed=self.seed, invoices=self.invoices, start=end - timedelta(days=self.history_days - 1),
                                 days=self.history_days, filter_cases=self.filter_cases,
                                 rounding_cases=self.rounding_cases)
        self.autotask = AutotaskSandbox(data, clock=self.clock, request_latency=self.autotask_latency)
        self.xero = XeroSandbox(clock=self.clock, faults=self.xero_faults, latency=self.xero_latency)
        self._autotask_fault_layer = with_faults(create_autotask_app(self.autotask), self.autotask_faults)
        self.org = self.add_org(self.org_name, self.org_country)
        # A fresh client secret per stack: nothing secret is ever written into the repository.
        self.xero_client_secret = secrets.token_urlsafe(24)
        self.redirect_uris = ["http://127.0.0.1/callback"]
        self.xero.register_app(XERO_CLIENT_ID, self.xero_client_secret, redirect_uris=self.redirect_uris)
        self._servers: list[BackgroundServer] = []

    def add_org(self, name: str, country: str = "NZ"):
        """Another Xero organisation in the same simulator (an MSP with several legal entities)."""
        org = self.xero.add_org(name, country)
        if country == "NZ":
            _add_demo_tax_rates(org)
        return org

    def allow_redirect(self, uri: str) -> None:
        """Register a callback address with the sandbox's Xero app, as a developer does in Xero's portal."""
        if uri not in self.redirect_uris:
            self.redirect_uris.append(uri)
            self.xero.register_app(XERO_CLIENT_ID, self.xero_client_secret, redirect_uris=self.redirect_uris)

    @property
    def customer_ids(self) -> list[int]:
        return sorted(c["id"] for c in self.autotask.records("Companies") if c.get("companyType") == 1)

    # ---- faults ----------------------------------------------------------------------------------
    def set_faults(self, *, autotask: FaultConfig | None = None, xero: FaultConfig | None = None) -> None:
        """Replace either simulator's fault configuration; requests from now on follow the new one."""
        if autotask is not None:
            self.autotask_faults = self._autotask_fault_layer.config = autotask
        if xero is not None:
            xero.headers_429.setdefault("X-Rate-Limit-Problem", "minute")
            self.xero_faults = self.xero.faults = xero

    def fault_counts(self) -> dict[str, dict[str, int]]:
        """What fired in each simulator so far, by kind, with the requests each saw (for a soak report)."""
        return {name: {"requests": faults.requests_seen, **faults.counts()}
                for name, faults in (("autotask", self._autotask_fault_layer.config), ("xero", self.xero.faults))}

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> "SandboxStack":
        self.autotask_server = BackgroundServer(self._autotask_fault_layer, self.host, self.autotask_port).start()
        self.xero_server = BackgroundServer(create_xero_app(self.xero), self.host, self.xero_port).start()
        self._servers = [self.autotask_server, self.xero_server]
        if self.existing_books:
            self._seed_existing_books()
        return self

    # What an MSP that kept its books in Xero before this sync already has there (EXISTING_ITEMS, and its
    # first customer under the same name but no ContactNumber), written over Xero's own API.
    EXISTING_ITEMS = (("LABOUR", "Labour", "200"), ("MANAGED", "Managed services", "200"))

    def existing_customer(self) -> dict:
        return next(c for c in self.autotask.records("Companies") if c["id"] == self.customer_ids[0])

    def _seed_existing_books(self) -> None:
        import httpx

        token = self.xero.issue_tokens(XERO_CLIENT_ID, [self.org.tenant_id])["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Xero-Tenant-Id": self.org.tenant_id,
                   "Accept": "application/json", "Content-Type": "application/json"}
        items = ",".join(f'{{"Code": "{code}", "Name": "{name}", "IsSold": true, "IsPurchased": false, '
                         f'"SalesDetails": {{"AccountCode": "{account}"}}}}' for code, name, account in self.EXISTING_ITEMS)
        customer = self.existing_customer()["companyName"].replace('"', '\\"')
        for path, body in (("Items", f'{{"Items": [{items}]}}'), ("Contacts", f'{{"Contacts": [{{"Name": "{customer}"}}]}}')):
            answer = httpx.put(f"{self.xero_url}/api.xro/2.0/{path}", headers=headers, content=body, timeout=10)
            answer.raise_for_status()

    def stop(self) -> None:
        for s in self._servers:
            s.stop()

    def __enter__(self) -> "SandboxStack":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    @property
    def autotask_url(self) -> str:
        return f"{self.autotask_server.base_url}/atservicesrest"

    @property
    def xero_url(self) -> str:
        return self.xero_server.base_url

    # ---- wiring a tenant to this stack -------------------------------------------------------------
    def secret_env(self, tenant: str) -> dict[str, str]:
        prefix = f"ATX_{tenant.upper().replace('-', '_')}"
        return {
            f"{prefix}_AUTOTASK_SECRET": self.autotask.credentials.secret,
            f"{prefix}_XERO_CLIENT_SECRET": self.xero_client_secret,
        }

    def tenant_settings(self, tenant: str, mapping: str = "demo", *, org=None, **options):
        """Settings for a tenant on this stack; secrets are referenced through environment variables.

        Every tenant of one stack shares its Autotask account; `org` picks the Xero organisation. Other
        options are tenant settings fields; `xero={...}` adds to (or overrides) the xero section this
        builds, e.g. `xero={"daily_call_budget": 20}`.
        """
        from atx.settings import TenantSettings

        org = org or self.org
        xero_options = options.pop("xero", None) or {}
        env = list(self.secret_env(tenant))
        cred = self.autotask.credentials
        return TenantSettings(
            name=tenant,
            autotask={
                "username": cred.username,
                "integration_code": cred.integration_code,
                "secret": f"env:{env[0]}",
                "zone_lookup_url": self.autotask_url,
            },
            xero={
                "client_id": XERO_CLIENT_ID,
                "client_secret": f"env:{env[1]}",
                "tenant_id": org.tenant_id,
                "organisation": org.name,  # as `atx connect xero` keeps it
                "api_base": self.xero_url,
                **xero_options,
            },
            mapping=mapping,
            **options,
        )

    def connect_tenant(self, tenant: str, mapping: str = "demo", *, org=None, **options):
        """Write the tenant file, export its secrets into this process, and store a granted token set.

        This is what `atx connect` does against the real services; the sandbox grants consent at once.
        """
        from atx.connections import forget_clients, token_store
        from atx.settings import save_tenant

        org = org or self.org
        settings = self.tenant_settings(tenant, mapping, org=org, **options)
        save_tenant(settings)
        os.environ.update(self.secret_env(tenant))
        token = self.xero.issue_tokens(XERO_CLIENT_ID, [org.tenant_id])
        token_store(settings).save(_with_expiry(token, self.clock))
        forget_clients(tenant)
        return settings


TOKEN_KEYS = ("access_token", "refresh_token", "expires_in", "token_type", "scope", "id_token")


def _with_expiry(token: dict, clock: Clock) -> dict:
    """Keep the keys the SDK accepts, and say when the access token expires so it can refresh."""
    import time

    token = {k: v for k, v in token.items() if k in TOKEN_KEYS}
    token["expires_at"] = time.time() + int(token.get("expires_in", 1800))
    if isinstance(token.get("scope"), str):
        token["scope"] = token["scope"].split()
    return token


def _add_demo_tax_rates(org) -> None:
    """The demo MSP bills Australian and British customers their local tax, as many NZ MSPs do; its
    accountant set up two custom rates for that, which Xero names TAX001 and TAX002."""
    for tax_type, name, rate in (("TAX001", "Australian GST", "10"), ("TAX002", "UK VAT", "20")):
        org.tax_rates[tax_type] = {
            "Name": name,
            "TaxType": tax_type,
            "ReportTaxType": "OUTPUT",
            "Status": "ACTIVE",
            "CanApplyToAssets": False,
            "CanApplyToEquity": False,
            "CanApplyToExpenses": False,
            "CanApplyToLiabilities": False,
            "CanApplyToRevenue": True,
            "DisplayTaxRate": Decimal(rate),
            "EffectiveRate": Decimal(rate),
            "TaxComponents": [{"Name": name, "Rate": Decimal(rate), "IsCompound": False, "IsNonRecoverable": False}],
        }
