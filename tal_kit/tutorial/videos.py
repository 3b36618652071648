"""Notebook 07 (your own videos): the video demo's pieces as one call each.

The backbone is the Makefile's ``DEMO_VIDEOS_VIT`` (a tiny random-weight ViT, 64x64 input), the extraction is what
``extract --preset demo_videos`` does, and the figures are pyplot-free ``matplotlib.figure.Figure`` objects.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from matplotlib.figure import Figure

from tal_kit.config import Config, resolve_path
from tal_kit.data.annotations import VideoRecord
from tal_kit.data.demo_videos import VideoDemoSpec

if TYPE_CHECKING:
    from tal_kit.evaluation import EvaluationResult
    from tal_kit.extraction.checkpoints import LoadedBackbone
    from tal_kit.extraction.runner import RunReport

__all__ = ["DEMO_VIDEO_VIT", "QUICK_VIDEO_SPEC", "video_spec", "demo_video_backbone", "extract_video_features",
           "video_frames_figure", "synthetic_map_report", "QUICK_TRAIN_OVERRIDES", "clear_previous_run", "report_view"]

# The Makefile's DEMO_VIDEOS_VIT flags (`make demo-videos`): architecture vit-b/16 with these overrides.
DEMO_VIDEO_VIT: dict[str, int] = {"embed_dim": 64, "depth": 1, "num_heads": 2, "mlp_dim": 128, "patch_size": 32,
                                  "img_size": 64}
# Fewer videos for a smoke run (the default is 32 + 8).
QUICK_VIDEO_SPEC: dict[str, object] = {"num_train_videos": 16, "num_test_videos": 4}
# Fewer epochs for a smoke run (the preset trains 12 + 2 warmup). With half the videos, fewer epochs than this
# left the detector mostly guessing (avg mAP ~0.2 at 8 + 2 against ~0.5 here, seed 0): too little to look at.
QUICK_TRAIN_OVERRIDES: tuple[str, ...] = ("opt.epochs=10",)


def video_spec(quick: bool, seed: int = 0) -> VideoDemoSpec:
    """The generator settings: the defaults (the Makefile's numbers), or QUICK_VIDEO_SPEC's fewer videos."""
    return VideoDemoSpec(seed=seed, **(QUICK_VIDEO_SPEC if quick else {}))


def demo_video_backbone(cfg: Config, seed: int = 0) -> LoadedBackbone:
    """The tiny random-weight ViT of the video demo, with clips of the config's ``num_frames``."""
    from tal_kit.extraction.checkpoints import random_backbone

    return random_backbone("vit-b/16", seed=seed, num_frames=cfg.dataset.num_frames, **DEMO_VIDEO_VIT)


def extract_video_features(cfg: Config, data_root: Path, backbone: LoadedBackbone, *, device: str = "auto",
                           batch_size: int = 32, recipe: str = "videomae2_tad") -> RunReport:
    """Every video under ``data_root/videos`` -> the config's feature folder, on its grid (as
    ``extract DATA_ROOT/videos --out DATA_ROOT --preset <cfg>`` does)."""
    from tal_kit.extraction.features import preset_clip_settings
    from tal_kit.extraction.recipes import get_recipe
    from tal_kit.extraction.runner import find_videos, run_extraction
    from tal_kit.runtime import resolve_device

    d = cfg.dataset
    feature_dir = resolve_path(cfg, data_root, d.feat_folder)
    grid = preset_clip_settings(cfg)
    return run_extraction(find_videos([data_root / "videos"]), feature_dir, backbone,
                          get_recipe(recipe, backbone.model.arch.img_size), grid, batch_size=batch_size,
                          device=resolve_device(device), file_prefix=d.file_prefix or "", file_ext=d.file_ext,
                          annotations=feature_dir / "video_info.json", num_classes=d.num_classes, progress=False)


def video_frames_figure(video: str | Path, record: VideoRecord, label_names: Sequence[str], *, count: int = 6,
                        height: int = 96) -> Figure:
    """``count`` frames of ``video`` at the middles and just outside its annotated actions, each titled with its
    time and the action it falls in (or "background")."""
    from tal_kit.viz.video_frames import frames_at

    times: list[float] = []
    for start, end in record.segments:
        times += [max(0.0, float(start) - 0.6), 0.5 * float(start + end)]
    times = sorted(times)[:count] or [0.5 * record.duration]
    frames = list(frames_at(video, times, height=height))
    fig = Figure(figsize=(2.0 * len(frames), 2.4), layout="constrained")
    for k, (t, _, image) in enumerate(frames):
        ax = fig.add_subplot(1, len(frames), k + 1)
        ax.imshow(image)
        ax.set_axis_off()
        inside = [label_names[int(c)] for s, e, c in zip(record.segments[:, 0], record.segments[:, 1], record.labels)
                  if s <= t <= e]
        ax.set_title(f"{t:.1f} s\n{inside[0] if inside else 'background'}", fontsize=9)
    fig.suptitle(f"{record.video_id}: frames inside and just before its annotated actions", fontsize=10)
    return fig


def synthetic_map_report(result: EvaluationResult, num_videos: int) -> str:
    """The held-out mAP table, headed so that nobody mistakes it for a result."""
    head = (f"SYNTHETIC videos (coloured shapes), {num_videos} held-out videos: this mAP tests the pipeline; it is "
            "never comparable with a published number")
    return f"{head}\n{result.table()}\naverage mAP (synthetic): {100 * result.average_mAP:.2f}%"


def clear_previous_run(run_dir: Path, dataset_name: str = "demo_videos") -> bool:
    """Remove ``run_dir`` when it holds an earlier run of this lesson (its checkpoint's config is ``dataset_name``),
    so that re-running the notebook trains afresh, as ``make demo-videos`` does; any other folder is left alone
    (and training into it is refused, naming it). Returns whether a run was removed."""
    import shutil

    from tal_kit.training.checkpoint import CheckpointError, read_checkpoint_file

    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return False
    try:
        stored = read_checkpoint_file(last)
    except (CheckpointError, OSError):  # not a checkpoint we can read: not ours to remove
        return False
    ours = isinstance(stored, dict) and (stored.get("config") or {}).get("dataset_name") == dataset_name
    if ours:
        shutil.rmtree(run_dir)
    return ours


def report_view(path: Path, *, height: int = 520):
    """The written report.html: inside JupyterLab an IFrame served by the Jupyter server (the video plays in it);
    elsewhere (a headless run) a Markdown line saying where the file is, to open from ``file://``."""
    from IPython.display import IFrame, Markdown

    from tal_kit.viz.jupyter_files import current_server, files_url

    server = current_server()
    url = files_url(path, server) if server is not None else None
    if url is not None:
        return IFrame(url, width="100%", height=height)
    size = path.stat().st_size / 1e6
    return Markdown(f"The linked report is [{path}]({path.resolve().as_uri()}) ({size:.1f} MB): open it in a "
                    "browser (it works from `file://`, offline).")
