"""Shared fixtures: a Prefect test server once per worker, isolated ATX_HOME per test, the sandbox stack."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Cached task results must never leak from one test run into the next.
os.environ.setdefault("PREFECT_TASKS_REFRESH_CACHE", "true")


@pytest.fixture(scope="session")
def prefect_server():
    """A real (temporary, SQLite) Prefect API for flow tests; started once per test worker."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def atx_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ATX_HOME", str(tmp_path / "atx"))
    monkeypatch.setenv("ATX_TENANTS_DIR", str(tmp_path / "tenants"))
    from atx.connections import forget_clients

    forget_clients()
    yield tmp_path
    forget_clients()


@pytest.fixture
def postgres_url():
    url = os.environ.get("ATX_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("set ATX_TEST_POSTGRES_URL (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test) to run PostgreSQL tests")
    return url


@pytest.fixture
def postgres_schema(postgres_url):
    """A fresh PostgreSQL schema of its own (dropped afterwards): parallel workers never share ledger tables.
    Reach it with tests.ledger_support.engine_in_schema(postgres_url, postgres_schema)."""
    from tests.ledger_support import postgres_schema as fresh_schema

    with fresh_schema(postgres_url) as schema:
        yield schema
