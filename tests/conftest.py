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


# ----------------------------------------------------------------------------------------------------------------------
# Running in parallel: `make test` runs `pytest -n N --dist loadgroup` (pytest-xdist). Plain `pytest` still works.
# ----------------------------------------------------------------------------------------------------------------------

# Modules whose module-scoped fixtures are expensive (a trained run, DDP training, a browser, the oracle's build):
# under --dist loadgroup their tests stay together on one worker, so the fixture is built once.
SHARED_FIXTURE_MODULES = ("test_train_demo", "test_detect", "test_ddp", "test_browser_viz", "test_nms_oracle", "test_model_parity",
                          "test_notebooks_01_02", "test_viz_model_replay", "test_demo_data")
# The longest modules first, so that no worker starts a dry run while the others are finishing: the four dry runs
# (one test each), then the other end-to-end modules, then everything else, each in file order.
LONGEST_FIRST = ("test_dryruns", "test_browser_viz", "test_train_demo", "test_notebooks_04_05", "test_notebook_07",
                 "test_ddp", "test_notebooks_01_02", "test_model_notebook", "test_model_parity", "test_length_aware")


def run_shared_dir(tmp_path_factory) -> Path:
    """A folder shared by all workers of this test run (the run's base temp folder; each xdist worker's own
    base temp folder is inside it). Write into it under a file lock."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def pytest_collection_modifyitems(config, items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    first_index: dict[str, int] = {}
    for index, item in enumerate(items):
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        first_index.setdefault(module, index)
        if module in SHARED_FIXTURE_MODULES:
            item.add_marker(pytest.mark.xdist_group(module))
    # a stable sort by module keeps each module's tests contiguous (module fixtures are set up once)
    def key(pair):
        index, item = pair
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module is not None else ""
        return (rank.get(module, len(rank)), first_index[module], index)
    items[:] = [item for _, item in sorted(enumerate(items), key=key)]
