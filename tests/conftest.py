"""Shared pytest set-up: report which codec is under test; a TLS certificate for the test run."""

from __future__ import annotations

from pathlib import Path

import pytest
from flood_server import self_signed_certificate

from ncplib.codec import implementation


def pytest_report_header(config: pytest.Config) -> str:
    return f"ncplib codec: {implementation()}"


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost, and its key (skips without openssl)."""
    made = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl is not installed")
    return made
