"""Compare two feature sets video by video: is a re-extraction the same as the hosted features?

Per video (matched by file name): the length difference, the mean per-time-step cosine similarity and the
relative L2 error ‖A − B‖/‖B‖ on the common steps, and the time lag (±``max_lag`` steps) that maximises the
mean cosine (a non-zero best lag means the two grids are offset, e.g. a different first clip or frame count).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tal_kit.data.features import SUPPORTED_EXTENSIONS, FeatureError, load_feature_file

__all__ = ["VideoComparison", "compare_arrays", "compare_folders", "CompareError", "summarise"]


class CompareError(ValueError):
    """Inputs that cannot be compared (missing folder, no common videos, different widths)."""


@dataclass(frozen=True)
class VideoComparison:
    video_id: str
    length_a: int
    length_b: int
    cosine: float  # mean over common time steps at lag 0
    relative_l2: float  # ||A - B|| / ||B|| over common time steps at lag 0
    best_lag: int  # shift d maximising the mean cosine of A[t + d] with B[t]
    best_lag_cosine: float

    @property
    def length_difference(self) -> int:
        return self.length_a - self.length_b


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12)))


def _shifted(a: np.ndarray, b: np.ndarray, lag: int) -> tuple[np.ndarray, np.ndarray]:
    """The overlapping parts of A[t + lag] and B[t]."""
    if lag >= 0:
        a = a[lag:]
    else:
        b = b[-lag:]
    n = min(len(a), len(b))
    return a[:n], b[:n]


def compare_arrays(video_id: str, a: np.ndarray, b: np.ndarray, max_lag: int = 8) -> VideoComparison:
    """Compare two [T, C] arrays of one video (float64 arithmetic)."""
    if a.shape[1] != b.shape[1]:
        raise CompareError(f"video {video_id!r}: feature widths differ ({a.shape[1]} vs {b.shape[1]})")
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    a0, b0 = _shifted(a, b, 0)
    rel = float(np.linalg.norm(a0 - b0) / max(np.linalg.norm(b0), 1e-12))
    cos0 = _mean_cosine(a0, b0)
    best_lag, best_cos = 0, cos0
    for lag in range(-max_lag, max_lag + 1):
        sa, sb = _shifted(a, b, lag)
        if lag == 0 or len(sa) < max(1, min(len(a), len(b)) // 2):  # ignore lags that leave little overlap
            continue
        c = _mean_cosine(sa, sb)
        if c > best_cos + 1e-9:
            best_lag, best_cos = lag, c
    return VideoComparison(video_id, len(a), len(b), cos0, rel, best_lag, best_cos)


def _files(folder: Path) -> dict[str, Path]:
    if folder.is_file():
        return {folder.stem: folder}
    if not folder.is_dir():
        raise CompareError(f"{folder}: no such feature file or folder")
    return {p.stem: p for p in sorted(folder.iterdir())
            if p.is_file() and p.suffix.lower() in SUPPORTED_EXTENSIONS and not p.name.startswith(".")}


def compare_folders(a: str | Path, b: str | Path, max_lag: int = 8,
                    prefix_a: str = "", prefix_b: str = "") -> tuple[list[VideoComparison], list[str], list[str]]:
    """(comparisons of the common videos, ids only in A, ids only in B). Each side is a folder or a single file;
    ``prefix_*`` is stripped from file names (e.g. ``v_`` on one side only)."""
    files_a = {k[len(prefix_a):] if k.startswith(prefix_a) else k: p for k, p in _files(Path(a)).items()}
    files_b = {k[len(prefix_b):] if k.startswith(prefix_b) else k: p for k, p in _files(Path(b)).items()}
    if Path(a).is_file() and Path(b).is_file():
        files_b = {next(iter(files_a)): next(iter(files_b.values()))}
    common = sorted(set(files_a) & set(files_b))
    if not common:
        raise CompareError(f"no video has feature files in both {a} and {b}")
    results = []
    for vid in common:
        try:
            fa = load_feature_file(files_a[vid], video_id=vid)
            fb = load_feature_file(files_b[vid], video_id=vid)
        except FeatureError as err:
            raise CompareError(str(err)) from None
        results.append(compare_arrays(vid, fa, fb, max_lag))
    return results, sorted(set(files_a) - set(files_b)), sorted(set(files_b) - set(files_a))


def summarise(results: list[VideoComparison], min_cosine: float, max_relative_l2: float,
              max_length_difference: int) -> tuple[list[str], list[str]]:
    """(report lines, ids past a tolerance): a video fails on low cosine, high relative L2, a length difference
    or a non-zero best lag."""
    lines = [f"{'video':<28} {'len A':>6} {'len B':>6} {'diff':>5} {'cosine':>8} {'rel L2':>8} {'best lag':>8}"]
    failing = []
    for r in results:
        bad = (r.cosine < min_cosine or r.relative_l2 > max_relative_l2
               or abs(r.length_difference) > max_length_difference or r.best_lag != 0)
        if bad:
            failing.append(r.video_id)
        lag = f"{r.best_lag:+d}" + (f" ({r.best_lag_cosine:.3f})" if r.best_lag else "")
        lines.append(f"{r.video_id:<28} {r.length_a:>6} {r.length_b:>6} {r.length_difference:>+5d} "
                     f"{r.cosine:>8.4f} {r.relative_l2:>8.4f} {lag:>8}" + ("  <- past tolerance" if bad else ""))
    cos = np.array([r.cosine for r in results])
    rel = np.array([r.relative_l2 for r in results])
    lines.append(f"summary: {len(results)} video(s); cosine mean {cos.mean():.4f} min {cos.min():.4f}; relative L2 "
                 f"mean {rel.mean():.4f} max {rel.max():.4f}; {sum(r.length_difference != 0 for r in results)} with a "
                 f"length difference, {sum(r.best_lag != 0 for r in results)} with a non-zero best lag; "
                 f"{len(failing)} past tolerance (cosine >= {min_cosine}, rel L2 <= {max_relative_l2}, "
                 f"|length diff| <= {max_length_difference}, lag 0)")
    return lines, failing


def describe_missing(only_a: list[str], only_b: list[str]) -> str | None:
    if not only_a and not only_b:
        return None
    return (f"not compared: {len(only_a)} video(s) only in A ({', '.join(only_a[:5])}), "
            f"{len(only_b)} only in B ({', '.join(only_b[:5])})")


def cli_compare_features(argv: list[str]) -> int:
    """``tal-kit compare-features A B``: exit 0 when every common video is within tolerance, 1 when not, 2 on bad
    input."""
    import argparse

    p = argparse.ArgumentParser(prog="tal-kit compare-features",
                                description="Compare two feature folders (or files) video by video.")
    p.add_argument("a", help="feature folder or file (e.g. your re-extraction)")
    p.add_argument("b", help="feature folder or file (e.g. the hosted features)")
    p.add_argument("--max-lag", type=int, default=8, help="search the best time lag in +-this many steps")
    p.add_argument("--min-cosine", type=float, default=0.99, help="tolerance: lowest acceptable mean cosine")
    p.add_argument("--max-rel-l2", type=float, default=0.1, help="tolerance: highest acceptable relative L2")
    p.add_argument("--max-length-diff", type=int, default=0, help="tolerance: largest |length difference|")
    p.add_argument("--prefix-a", default="", help="file-name prefix to strip on side A (e.g. v_)")
    p.add_argument("--prefix-b", default="", help="file-name prefix to strip on side B")
    args = p.parse_args(argv)
    results, only_a, only_b = compare_folders(args.a, args.b, args.max_lag, args.prefix_a, args.prefix_b)
    lines, failing = summarise(results, args.min_cosine, args.max_rel_l2, args.max_length_diff)
    print("\n".join(lines))
    missing = describe_missing(only_a, only_b)
    if missing:
        print(missing)
    return 1 if failing else 0
