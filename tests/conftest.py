"""Shared pytest set-up: report which codec is under test."""

from __future__ import annotations

import pytest

from ncplib.codec import implementation


def pytest_report_header(config: pytest.Config) -> str:
    return f"ncplib codec: {implementation()}"
