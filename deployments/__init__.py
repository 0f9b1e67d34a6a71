"""Prefect deployments of the sync flows: one per flow and tenant, generated from tenants/*.yaml.

`atx deployments sync` rewrites prefect.yaml's deployments from the tenant files (for `prefect deploy
--all` and a process work pool); `atx serve` serves the same deployments from one process.
"""
from deployments.generate import (FLOWS, WORK_POOL, deployment_entries, kept_entries, payments_trigger, prefect_yaml,
                                  runner_deployments, stale_entries)

__all__ = ["FLOWS", "WORK_POOL", "deployment_entries", "kept_entries", "payments_trigger", "prefect_yaml",
           "runner_deployments", "stale_entries"]
