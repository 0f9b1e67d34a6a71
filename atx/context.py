"""A tenant's context, resolved once per run: settings, mapping, ledger and clients.

Flows open it at their start and hand it to every task, so no task reloads the tenant file or
rebuilds a client. Prefect still records the tenant's name as the run's parameter.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from atx.connections import autotask_client, ledger_for, xero_gateway
from atx.settings import TenantSettings, load_tenant
from clients.autotask import AutotaskClient, AutotaskInvoices
from clients.xero import XeroGateway
from core.documents import DocumentKind
from core.mapping import InvoiceMapping, load_mapping
from ledger import Ledger


@dataclass(frozen=True)
class TenantContext:
    settings: TenantSettings
    mapping: InvoiceMapping
    ledger: Ledger
    xero: XeroGateway
    run_id: str

    @property
    def tenant(self) -> str:
        return self.settings.name

    def autotask(self) -> AutotaskClient:
        """A new Autotask client (use it in a `with` block): each task's calls are counted on their own."""
        return autotask_client(self.settings)

    @cached_property
    def autotask_invoices(self) -> AutotaskInvoices:
        """What the pipeline writes back to Autotask (paid dates), behind the same calls as the Xero gateway."""
        return AutotaskInvoices(self.autotask)

    def target(self, kind: DocumentKind):
        """The gateway a kind's documents are found in and written to."""
        return self.autotask_invoices if kind.target == "Autotask" else self.xero

    def __repr__(self) -> str:
        return f"TenantContext({self.tenant!r}, run {self.run_id})"


def open_tenant(tenant: str, run_id: str) -> TenantContext:
    settings = load_tenant(tenant)
    return TenantContext(settings=settings, mapping=load_mapping(settings.mapping_path()), ledger=ledger_for(settings),
                         xero=xero_gateway(settings), run_id=run_id)
