"""Both simulators together, running on loopback ports: what `atx sandbox serve`, `atx demo` and the
end-to-end tests start.

The stack also knows how to write a tenant file that points at itself, so the production code paths
(settings → clients → flows) are exercised unchanged: only base URLs and secrets differ.
"""
from __future__ import annotations

import logging
import os
import secrets
import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from urllib.parse import urlsplit

from sandbox import persist
from sandbox.autotask import ApiCredential, AutotaskSandbox, create_app as create_autotask_app, generate_data, load_data
from sandbox.clock import Clock, SystemClock
from sandbox.faults import FaultConfig, with_faults
from sandbox.serving import BackgroundServer
from sandbox.xero.app import create_app as create_xero_app
from sandbox.xero.state import XeroSandbox

log = logging.getLogger(__name__)

XERO_CLIENT_ID = "SANDBOXCLIENT0000000000000000001"
# `atx connect xero` listens for Xero's answer on http://localhost:8765/callback unless told otherwise
# (--port, --redirect-host 127.0.0.1): the redirect URIs a developer registers for it in Xero's portal.
CALLBACK_PORT = 8765


def callback_uris(port: int = CALLBACK_PORT) -> list[str]:
    return [f"http://localhost:{port}/callback", f"http://127.0.0.1:{port}/callback"]


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
    lines_per_invoice: int | None = None  # top each invoice up to this many billing items (volume runs)
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
    # Where the stack keeps its identity and data across restarts (`atx sandbox serve`: ATX_HOME/sandbox):
    # loaded when it is built, saved soon after each request and when it stops (sandbox/persist.py).
    # None (tests, the demo): a new sandbox every time, nothing written.
    state_dir: str | None = None
    save_every: float = 1.0         # seconds between saves while requests come in
    callback_port: int = CALLBACK_PORT  # the port of the `atx connect xero` redirect URIs the Xero app registers

    def __post_init__(self):
        self._servers: list[BackgroundServer] = []
        self._saver: threading.Thread | None = None
        self._stop_saving = threading.Event()
        self._changed = threading.Event()
        self._saved_text: str | None = None
        saved = persist.load(self.state_dir) if self.state_dir else None
        self.resumed = saved is not None
        if saved is not None:
            self._resume(saved)
        else:
            self._create()
        self.allow_redirects(callback_uris(self.callback_port))

    def _create(self) -> None:
        end = self.window_end or date.today()
        self.window_end = end
        if self.data_file:
            data = load_data(self.data_file)
        else:
            data = generate_data(seed=self.seed, invoices=self.invoices, start=end - timedelta(days=self.history_days - 1),
                                 days=self.history_days, filter_cases=self.filter_cases,
                                 rounding_cases=self.rounding_cases, lines_per_invoice=self.lines_per_invoice)
        self.autotask = AutotaskSandbox(data, clock=self.clock, request_latency=self.autotask_latency)
        self.xero = XeroSandbox(clock=self.clock, faults=self.xero_faults, latency=self.xero_latency)
        self._autotask_fault_layer = with_faults(create_autotask_app(self.autotask), self.autotask_faults)
        self.org = self.add_org(self.org_name, self.org_country)
        # A fresh client secret per stack: nothing secret is ever written into the repository.
        self.xero_client_secret = secrets.token_urlsafe(24)
        self.redirect_uris = ["http://127.0.0.1/callback"]
        self.xero.register_app(XERO_CLIENT_ID, self.xero_client_secret, redirect_uris=self.redirect_uris)
        self.created_at = datetime.now(timezone.utc)
        self.tenants: list[str] = []  # the tenant files `atx sandbox serve` wrote for this sandbox

    def _resume(self, saved: dict) -> None:
        """The sandbox as it was saved: same credentials, secret, organisations, records and tokens."""
        identity = saved["identity"]
        self.seed, self.invoices, self.data_file = identity["seed"], identity["invoices"], identity["data_file"]
        self.window_end = identity["window_end"]
        self.created_at = identity["created_at"]
        self.tenants = list(identity.get("tenants", []))
        users = saved["autotask"]["users"]
        main = ApiCredential(users[0]["username"], users[0]["secret"], users[0]["integration_code"])
        self.autotask = AutotaskSandbox(clock=self.clock, request_latency=self.autotask_latency, credentials=main)
        self.autotask.import_state(saved["autotask"])
        self.xero = XeroSandbox(clock=self.clock, faults=self.xero_faults, latency=self.xero_latency)
        self.xero.import_state(saved["xero"])
        self._autotask_fault_layer = with_faults(create_autotask_app(self.autotask), self.autotask_faults)
        self.org = self.xero.orgs[identity["organisation"]]
        app = self.xero.identity.apps[XERO_CLIENT_ID]
        self.xero_client_secret = app.client_secret
        self.redirect_uris = list(app.redirect_uris)
        self.existing_books = False  # they were written the first time, and are in the saved organisation
        # Where it listened before, unless told otherwise: the tenant files it wrote point there.
        addresses = identity.get("addresses") or {}
        if self.autotask_port is None and addresses.get("autotask"):
            self.autotask_port = urlsplit(addresses["autotask"]).port
        if self.xero_port is None and addresses.get("xero"):
            self.xero_port = urlsplit(addresses["xero"]).port

    def add_org(self, name: str, country: str = "NZ"):
        """Another Xero organisation in the same simulator (an MSP with several legal entities)."""
        org = self.xero.add_org(name, country)
        if country == "NZ":
            _add_demo_tax_rates(org)
        return org

    def allow_redirect(self, uri: str) -> None:
        """Register a callback address with the sandbox's Xero app, as a developer does in Xero's portal."""
        self.allow_redirects([uri])

    def allow_redirects(self, uris) -> None:
        new = [uri for uri in uris if uri not in self.redirect_uris]
        if new:
            self.redirect_uris.extend(new)
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
        autotask_app, xero_app = self._autotask_fault_layer, create_xero_app(self.xero)
        if self.state_dir:
            autotask_app, xero_app = _NotesRequests(autotask_app, self._changed), _NotesRequests(xero_app, self._changed)
        self.autotask_server = BackgroundServer(autotask_app, self.host, self.autotask_port).start()
        self.xero_server = BackgroundServer(xero_app, self.host, self.xero_port).start()
        self._servers = [self.autotask_server, self.xero_server]
        if self.existing_books:
            self._seed_existing_books()
        if self.state_dir:
            self.save()  # a new sandbox's identity is on disk before anyone copies its secrets
            self._saver = threading.Thread(target=self._keep_saving, daemon=True, name="sandbox-state")
            self._saver.start()
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
        if self._saver is not None:
            self._stop_saving.set()
            self._saver.join(timeout=30)
            self._saver = None
        if self.state_dir:
            self.save()  # the servers are stopped: nothing changes after this snapshot

    # ---- the state kept across restarts (state_dir) -----------------------------------------------
    def snapshot(self) -> dict:
        """The stack's identity and data, as sandbox/persist.py writes them."""
        return {
            "identity": {
                "seed": self.seed, "invoices": self.invoices, "data_file": self.data_file,
                "window_end": self.window_end, "created_at": self.created_at,
                "organisation": self.org.tenant_id, "tenants": list(self.tenants),
                "addresses": {"autotask": self.autotask_url, "xero": self.xero_url} if self._servers else None,
            },
            "autotask": self.autotask.export_state(),
            "xero": self.xero.export_state(),
        }

    def save(self) -> None:
        """Write the state now, unless it is what was last written."""
        if not self.state_dir:
            raise RuntimeError("this sandbox stack has no state_dir to save to")
        self._changed.clear()
        text = persist.dumps(self.snapshot())
        if text != self._saved_text:
            persist.write(self.state_dir, text)
            self._saved_text = text

    def _keep_saving(self) -> None:
        # A request may have changed something: save a moment later, so a burst of calls is one write.
        while not self._stop_saving.is_set():
            if self._changed.wait(0.5) and not self._stop_saving.wait(self.save_every):
                try:
                    self.save()
                except Exception:  # a full disk must not stop the simulators; the save at exit tries again
                    log.exception("could not save the sandbox state in %s", self.state_dir)

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

    def write_tenant(self, tenant: str) -> str:
        """What `atx sandbox serve` does with the tenant file: point it at this sandbox, with no token (that
        is `atx connect`'s part). Returns what it did, in words. A new file gets SANDBOX_SCHEDULE, so the
        committed prefect.yaml matches it; an existing one keeps everything that is not the sandbox's."""
        from atx.settings import SettingsError, load_tenant, save_tenant, tenant_file

        path = tenant_file(tenant)
        if not path.exists():
            save_tenant(self.tenant_settings(tenant, schedule=dict(SANDBOX_SCHEDULE)))
            self._remember_tenant(tenant)
            return f"wrote {path}"
        current = load_tenant(tenant)
        if current.xero.client_id != XERO_CLIENT_ID:
            raise SettingsError(f"{path} is not a sandbox tenant (it names another Xero app), so `atx sandbox serve` "
                                "leaves it alone: pass --tenant with another name")
        fresh = self.tenant_settings(tenant)
        if self.resumed and tenant in self.tenants:
            # Connected since, perhaps (`atx connect` moves secrets into blocks and picks the organisation):
            # only the addresses follow the sandbox.
            keys = {"autotask": ("zone_lookup_url",), "xero": ("api_base",)}
            done = f"kept {path}"
        else:
            # The file of a sandbox that is gone (reset, or from a release that did not keep sandboxes): the
            # credentials and the organisation are this sandbox's now, and what the ledger holds for it
            # describes documents that no longer exist anywhere.
            keys = {"autotask": ("username", "integration_code", "secret", "zone_lookup_url"),
                    "xero": ("client_id", "client_secret", "tenant_id", "api_base")}
            try:
                forgotten = forget_tenant(current)
            except Exception as exc:  # the ledger is not reachable from here: the runs will say what they find
                forgotten = f"its ledger could not be cleared: {type(exc).__name__}"
            done = f"pointed {path} at this new sandbox" + (f" ({forgotten})" if forgotten else "")
        settings = current.model_copy(update={
            section: getattr(current, section).model_copy(update={k: getattr(getattr(fresh, section), k) for k in names})
            for section, names in keys.items()})
        if settings != current:
            save_tenant(settings)
            if done.startswith("kept"):
                done = f"updated the addresses in {path}"
        self._remember_tenant(tenant)
        return done

    def _remember_tenant(self, tenant: str) -> None:
        if tenant not in self.tenants:
            self.tenants.append(tenant)
            self._changed.set()  # saved soon, so `atx sandbox reset` finds it even after a kill


# The schedule of a tenant `atx sandbox serve` writes: hourly, switched off, so `atx serve` registers the
# deployment and runs it only when asked. The committed prefect.yaml is generated from exactly this.
SANDBOX_SCHEDULE = {"cron": "0 * * * *", "timezone": "Pacific/Auckland", "active": False}


def forget_tenant(settings) -> str:
    """Forget what the tenant's ledger holds about its documents and its Xero token set: for a tenant whose
    sandbox organisation is gone. Returns what was forgotten, in words ("" when nothing was)."""
    from atx.connections import forget_clients, ledger_for, token_store

    forgotten = ledger_for(settings).forget_tenant(settings.name)
    had_token = token_store(settings).last_saved() is not None
    token_store(settings).delete()
    forget_clients(settings.name)
    said = [f"forgot the {forgotten} document(s) its ledger held"] if forgotten else []
    return ", ".join(said + (["deleted its Xero token set"] if had_token else []))


def _listening(url: str | None) -> bool:
    import socket

    if not url:
        return False
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=0.5):
            return True
    except OSError:
        return False


def reset(state_dir: str) -> list[str]:
    """`atx sandbox reset`: delete the saved sandbox, and the tenant files it wrote that still point at it
    (with what the ledger holds for them), so the next `atx sandbox serve` starts a new one. Returns what it
    did, one line each; RuntimeError while that sandbox still answers (its save at exit would undo this)."""
    from atx.settings import SettingsError, load_tenant, tenant_file

    try:
        saved = persist.load(state_dir)
    except persist.StateError:
        saved = None  # unreadable: deleting it is the fix
    done = []
    if saved is not None:
        identity = saved["identity"]
        xero_url = (identity.get("addresses") or {}).get("xero")
        if _listening(xero_url):
            raise RuntimeError(f"the sandbox is still running at {xero_url}: stop `atx sandbox serve` (Ctrl+C) first, "
                               "then run `atx sandbox reset` again")
        for name in identity.get("tenants", []):
            path = tenant_file(name)
            try:
                settings = load_tenant(name) if path.exists() else None
            except SettingsError as exc:
                done.append(f"left {path}: {exc}")
                continue
            if settings is None or settings.xero.client_id != XERO_CLIENT_ID or settings.xero.api_base != xero_url:
                continue  # gone, or pointed elsewhere since: not this sandbox's to delete
            forgotten = forget_tenant(settings)
            path.unlink()
            done.append(f"deleted {path}" + (f" ({forgotten})" if forgotten else ""))
    if persist.remove(state_dir):
        done.append(f"deleted the sandbox state in {state_dir}")
    return done


class _NotesRequests:
    """ASGI wrapper: every request may change the sandbox (a consent page GET writes a connection), so each
    one asks for a save; a save that finds nothing new writes nothing."""

    def __init__(self, app, changed: threading.Event):
        self.app = app
        self.changed = changed

    async def __call__(self, scope, receive, send):
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.changed.set()


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
