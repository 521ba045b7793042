"""Shared pytest fixtures. Prefect's test server is opt-in (it takes ~20 s to start): request
``prefect_server`` in the tests that need one."""

from __future__ import annotations

import os

# Prefect freezes its settings when first imported: set these before anything imports it.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory):
    """One temporary Prefect API server (SQLite) for the session, with its own PREFECT_HOME."""
    from prefect.settings import PREFECT_HOME, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect_home")
    with temporary_settings(updates={PREFECT_HOME: home}):
        with prefect_test_harness(server_startup_timeout=120):
            yield
