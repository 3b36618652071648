"""A tiny demo dataset and model for end-to-end tests of training, inference, DDP and notebooks 04-05.

40 training and 8 test videos of 15-30 s (every class appears), a 32-wide model with short windows: a whole train + evaluate cycle
takes seconds on one CPU core, while running exactly the code path of the real presets.
"""
from __future__ import annotations

from pathlib import Path

import pytest

TINY_OVERRIDES = ["dataset.max_seq_len=128", "model.embd_dim=32", "model.fpn_dim=32", "model.head_dim=32",
                  "model.n_mha_win_size=3", "loader.batch_size=4", "loader.num_workers=0", "opt.epochs=1",
                  "opt.warmup_epochs=1", "trainer.eval_start_epoch=0"]


def make_tiny_demo(root: Path) -> Path:
    from tal_kit.data.demo import DemoSpec, generate_demo_dataset

    generate_demo_dataset(root, DemoSpec(seed=3, num_train_videos=40, num_test_videos=8, min_duration=15.0,
                                         max_duration=30.0))
    return root


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory) -> Path:
    """Generated once per test run: under pytest-xdist the workers share it (the first one writes it, under a file
    lock; the generator renames a finished folder into place, so nothing half-written is ever seen)."""
    from filelock import FileLock

    from tal_kit.data.demo import META_FILE
    from tests.conftest import run_shared_dir

    root = run_shared_dir(tmp_path_factory) / "tiny_demo" / "demo"
    root.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root.parent / ".lock")):
        if not (root / META_FILE).exists():
            make_tiny_demo(root)
    return root
