"""Xero's settings as the mapping needs them, read once per run (the gateway remembers them briefly)."""
from __future__ import annotations

from decimal import Decimal

from prefect import task
from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.invoices import XeroReference
from tasks.sync import worth_retrying


def _status(model) -> str:
    value = getattr(model, "status", None)
    return str(getattr(value, "value", value) or "")


@task(name="read-xero-settings", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def read_xero_reference(ctx: TenantContext) -> XeroReference:
    xero = ctx.xero
    org = xero.organisation()
    accounts = xero.accounts()
    tax_rates = xero.tax_rates()
    currencies = xero.currencies()
    tracking = {
        str(c.name): frozenset(str(o.name) for o in (c.options or []) if _status(o) in ("ACTIVE", ""))
        for c in xero.tracking_categories()
        if c.name and _status(c) in ("ACTIVE", "")
    }
    themes = {str(t.name): str(t.branding_theme_id) for t in xero.branding_themes() if t.name}
    base = str(getattr(org.base_currency, "value", org.base_currency))
    return XeroReference(
        account_codes=frozenset(a.code for a in accounts if a.code and str(getattr(a.status, "value", a.status)) == "ACTIVE"),
        tax_types={
            t.tax_type: Decimal(str(t.effective_rate if t.effective_rate is not None else t.display_tax_rate or 0))
            for t in tax_rates
            if t.tax_type and str(t.status) in ("ACTIVE", "None")
        },
        currencies=frozenset(str(getattr(c.code, "value", c.code)) for c in currencies) | {base},
        base_currency=base,
        tracking=tracking,
        branding_themes=themes,
    )
