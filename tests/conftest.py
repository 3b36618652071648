"""Shared fixtures: the real reference files in ../shared/data (tests that need them skip when absent)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("TAL_KIT_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    """Path to a file under ../shared/data, or skip the test when it is not there."""
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"reference file {path} is not present")
    return path


@pytest.fixture
def thumos_json() -> Path:
    return shared_file("thumos14/thumos14.json")


@pytest.fixture
def anet_json() -> Path:
    return shared_file("anet/anet1.3_trainval_gt.json")


@pytest.fixture
def thumos_cls_scores() -> Path:
    return shared_file("thumos14/thumos14_cls_scores.pkl")


@pytest.fixture
def rc3d_predictions() -> Path:
    return shared_file("predictions/rc3d_thumos14_test.json")
