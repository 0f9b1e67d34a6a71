"""A run spaces out Python's cyclic collector while it holds its window's records, and puts it back after."""
from __future__ import annotations

import gc
import threading

import pytest

from pipeline.garbage import RUN_THRESHOLDS, spaced_out_collections


def test_thresholds_are_raised_for_the_runs_and_put_back_after_the_last():
    before = gc.get_threshold()
    assert before != RUN_THRESHOLDS
    with spaced_out_collections():
        assert gc.get_threshold() == RUN_THRESHOLDS
        with spaced_out_collections():  # a backfill's chunk inside its run
            assert gc.get_threshold() == RUN_THRESHOLDS
        assert gc.get_threshold() == RUN_THRESHOLDS  # the outer run is still going
    assert gc.get_threshold() == before


def test_a_failed_run_and_runs_in_threads_leave_the_collector_as_it_was():
    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        with spaced_out_collections():
            raise RuntimeError("the run failed")
    assert gc.get_threshold() == before
    inside, go = threading.Barrier(3), threading.Event()

    def one_run():
        with spaced_out_collections():
            inside.wait()
            go.wait()

    runs = [threading.Thread(target=one_run) for _ in range(2)]
    for r in runs:
        r.start()
    inside.wait()
    assert gc.get_threshold() == RUN_THRESHOLDS
    go.set()
    for r in runs:
        r.join()
    assert gc.get_threshold() == before
