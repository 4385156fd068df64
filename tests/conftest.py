"""Shared fixtures. Real captures come from ``NERFSTAGE_DATA`` (default ``../shared/data``); a test that needs
them skips with a reason when they are absent, except under ``CI=true`` where absence is a failure."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("NERFSTAGE_DATA", REPO.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data():
    """Return a function ``need(name) -> Path`` for a folder of the shared real captures."""

    def need(name: str) -> Path:
        path = data_root() / name
        if not path.exists():
            reason = f"real capture {path} not found (set NERFSTAGE_DATA)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(reason + " -- required under CI=true")
            pytest.skip(reason)
        return path

    return need
