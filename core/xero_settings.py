"""What of a Xero organisation's settings the sync may use: the one derived view for the mapping and `atx check`.

`XeroGateway.settings()` (clients/xero.py) reads everything, archived and inactive included, as plain
values. `xero_reference` keeps what a document may be sent with: active accounts, active tax rates, active
tracking categories and options, every branding theme and subscribed currency. The mapping plans with this
view and `atx check` checks the mapping file against this same view, so the check flags exactly what the
mapping would set aside. Pure: no HTTP, no SDK models.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from core.invoices import XeroReference

if TYPE_CHECKING:  # only the shape is needed here: core never imports the Xero client at run time
    from clients.xero import XeroSettings

# Xero sends no Status on some tax rates, tracking categories and options; those are in use.
USABLE = ("ACTIVE", None)


def xero_reference(settings: XeroSettings) -> XeroReference:
    """The usable part of the organisation's settings, as the mapping needs it."""
    base = settings.base_currency
    return XeroReference(
        account_codes=frozenset(a.code for a in settings.accounts if a.code and a.status == "ACTIVE"),
        tax_types={t.tax_type: t.effective_rate for t in settings.tax_rates if t.tax_type and t.status in USABLE},
        currencies=frozenset(settings.currencies) | {base},
        base_currency=base,
        tracking={
            c.name: frozenset(o.name for o in c.options if o.status in USABLE)
            for c in settings.tracking_categories if c.status in USABLE
        },
        branding_themes=dict(settings.branding_themes),
        payment_accounts={key: a.id for a in settings.accounts
                          if a.id and a.status == "ACTIVE" and (a.type == "BANK" or a.payments_enabled)
                          for key in (a.code, a.name) if key},
    )
