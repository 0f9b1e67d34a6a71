"""Our `@task`: Prefect's own, except that every argument is handed over whole.

Before a task runs, Prefect walks each of its arguments element by element, looking for futures and states
to wait on and to draw as dependencies in the UI. On a frame of 100,000 billing items, or a list of 10,000
document plans, that walk cost more CPU than the mapping itself (a third of a 1,000-invoice sync). Our
flows call their tasks directly and pass values, never futures, so there is nothing for the walk to find:
each argument is wrapped in Prefect's `quote`, which the engine unwraps for the function without looking
inside. The price is the one Prefect documents for `quote`: the UI draws no arrows between tasks from
their arguments (the run's task list and logs are unchanged).
"""
from __future__ import annotations

from typing import Any

from prefect import Task
from prefect.utilities.annotations import BaseAnnotation, quote


def _whole(value: Any) -> Any:
    return value if isinstance(value, BaseAnnotation) else quote(value)


class WholeArgumentsTask(Task):
    """A Prefect task whose arguments are never walked (see the module's docstring)."""

    def __call__(self, *args: Any, return_state: bool = False, wait_for: Any = None, **kwargs: Any) -> Any:
        return super().__call__(*map(_whole, args), return_state=return_state, wait_for=wait_for,
                                **{name: _whole(value) for name, value in kwargs.items()})


def task(fn=None, /, **options: Any):
    """`prefect.task`, making a WholeArgumentsTask: `@task` and `@task(name=..., retries=...)` alike."""
    if fn is None:
        return lambda function: WholeArgumentsTask(fn=function, **options)
    return WholeArgumentsTask(fn=fn, **options)
