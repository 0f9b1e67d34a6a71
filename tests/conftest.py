"""Shared fixtures: a Prefect test server once per worker, isolated ATX_HOME per test, the sandbox stack."""
from __future__ import annotations

import os

import pytest

os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
# Cached task results must never leak from one test run into the next.
os.environ.setdefault("PREFECT_TASKS_REFRESH_CACHE", "true")
# The key sealing Xero tokens in the ledger: one per test session, never written anywhere. Without it every
# process that saves a token would fetch (or make) the Prefect Secret block atx-token-key, which needs a
# Prefect API; tests of that default unset it.
if not os.environ.get("ATX_TOKEN_KEY"):
    from cryptography.fernet import Fernet

    os.environ["ATX_TOKEN_KEY"] = Fernet.generate_key().decode()

try:
    from hypothesis import HealthCheck, settings as hypothesis_settings
except ImportError:  # hypothesis is in the `test` extra; only the property tests need it
    pass
else:
    # The same examples on every run and machine, none kept between runs: a failure in CI is one that
    # reproduces. HYPOTHESIS_PROFILE=explore searches afresh (more examples, random) when hunting for bugs.
    hypothesis_settings.register_profile(
        "ci", derandomize=True, database=None, deadline=None, print_blob=True,
        suppress_health_check=[HealthCheck.too_slow])
    hypothesis_settings.register_profile("explore", deadline=None, max_examples=2000, database=None)
    hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
    from atx.connections import forget_clients, use_clock

    use_clock()  # the system clock, whatever an earlier test chose
    yield tmp_path
    use_clock()  # which forgets the gateways too: none outlives the test's ledger
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
