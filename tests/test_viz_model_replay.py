"""The explorer's NMS replay on cached candidates gives exactly the model's own post-processed detections."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tal_kit.config import load_config
from tal_kit.inference.candidates import load_candidates, save_candidates
from tal_kit.inference.nms import apply_nms, nms_settings
from tal_kit.inference.predict import predict

SMALL_MODEL = ["dataset.max_seq_len=128", "model.embd_dim=32", "model.fpn_dim=32", "model.head_dim=32",
               "model.n_mha_win_size=3", "loader.num_workers=0"]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    from tal_kit.data.demo import DemoSpec, generate_demo_dataset

    root = tmp_path_factory.mktemp("viz_demo") / "demo"
    # 40 short training videos so that every class occurs in the file (the config expects 20); 4 test videos.
    generate_demo_dataset(root, DemoSpec(seed=3, num_train_videos=40, num_test_videos=4, min_duration=15.0,
                                         max_duration=40.0))
    return root


@pytest.mark.parametrize("overrides", [[], ["test_cfg.multiclass_nms=false", "test_cfg.voting_thresh=0.75"]],
                         ids=["soft-multiclass", "class-agnostic-voting"])
def test_replayed_nms_equals_the_model_postprocess(small_demo, tmp_path, overrides):
    from tal_kit.data.dataset import TALDataset, collate_videos
    from tal_kit.model import ActionFormer, postprocess

    cfg = load_config("demo", SMALL_MODEL + overrides)
    torch.manual_seed(0)
    model = ActionFormer(cfg).eval()
    dataset = TALDataset(cfg, small_demo, is_training=False)
    model.compact_padding = False  # one video at a time at upstream's padding, as the expected side below
    cache = predict(model, dataset, cfg, keep_candidates=True, progress=False, batch_size=1).candidates
    cache = load_candidates(save_candidates(tmp_path / "candidates.npz", cache))  # through the file format too
    assert list(cache) == dataset.video_ids
    settings = nms_settings(cfg.test_cfg)
    for index in range(len(dataset)):
        item = dataset[index]
        batch = collate_videos([item], cfg.dataset.max_seq_len, cfg.model.max_div_factor, is_training=False)
        with torch.no_grad():
            expected = postprocess([model.candidates(model(batch["feats"], batch["mask"]), 0)], batch, cfg.test_cfg)[0]
        replayed = apply_nms(cache[item["video_id"]], settings)
        assert len(replayed) == len(expected["scores"]) > 0
        np.testing.assert_allclose(replayed.segments, expected["segments"].double().numpy(), rtol=0, atol=1e-5)
        np.testing.assert_allclose(replayed.scores, expected["scores"].double().numpy(), rtol=0, atol=1e-7)
        np.testing.assert_array_equal(replayed.labels, expected["labels"].numpy())
