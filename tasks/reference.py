"""Xero's settings as the mapping needs them: the same derived view `atx check` checks the mapping against."""
from __future__ import annotations

from prefect.cache_policies import NONE

from atx.context import TenantContext
from core.invoices import XeroReference
from core.xero_settings import xero_reference
from tasks.sync import worth_retrying
from tasks.prefect_task import task


@task(name="read-xero-settings", retries=3, retry_delay_seconds=[5, 30, 120], retry_condition_fn=worth_retrying,
      cache_policy=NONE)
def read_xero_reference(ctx: TenantContext) -> XeroReference:
    """One read of the organisation's settings per run (the gateway remembers them for two minutes)."""
    return xero_reference(ctx.xero.settings())
