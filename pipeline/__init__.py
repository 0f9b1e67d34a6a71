"""The document pipeline's flow body: every document flow is a `FlowSpec` run by `run` (pipeline/flow.py).

Kept out of flows/ so the flows themselves only compose: a flow module names its kinds and its reading
and planning, and hands them to `run`.
"""
from pipeline.flow import FlowSpec, Planned, ReadAndPlan, run, run_name

__all__ = ["FlowSpec", "Planned", "ReadAndPlan", "run", "run_name"]
