"""Per-video feature files: one reader for .npy .npz .pt/.pth .pkl .csv, checks, and the reference-grid resampling.

Every format stores one video as a [T, C] array: T time steps (clips) by C channels, the layout ActionFormer and
InternVideo use. ``.npy`` and ``.pt`` files are memory-mapped, so reading a reference file's length costs a header
read. ``.pkl`` files are unpickled, which runs code from the file: only read feature files you trust.

:class:`FeatureSource` binds a folder to the config's ``file_prefix``/``file_ext``/``input_dim`` and, when
``reference_feat_folder`` is set, returns the features linearly resampled onto that folder's per-video length
(InternVideo feeds VideoMAE features on the I3D grid for THUMOS and on the TSP grid for ActivityNet, SPEC §A.4).
"""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import torch

from tal_kit.data.grid import resample_features
from tal_kit.feature_files import FEATURE_FORMATS, write_features

if TYPE_CHECKING:
    from tal_kit.config import Config

__all__ = ["FeatureError", "SUPPORTED_EXTENSIONS", "feature_path", "read_feature_array", "feature_length",
           "load_feature_file", "write_feature_file", "FeatureSource"]

SUPPORTED_EXTENSIONS = FEATURE_FORMATS
# keys tried, in order, when a .npz/.pt/.pkl file holds a mapping instead of a bare array
_ARRAY_KEYS = ("feats", "features", "feat", "arr_0", "data")


class FeatureError(ValueError):
    """A feature file that is missing or unusable; the message names the file, the video and what is wrong."""


def feature_path(folder: str | Path, video_id: str, file_prefix: str | None = "", file_ext: str = ".npy") -> Path:
    """``<folder>/<file_prefix><video_id><file_ext>``, the naming every loader in the recipes uses."""
    return Path(folder) / f"{file_prefix or ''}{video_id}{file_ext}"


def _extension(path: Path) -> str:
    ext = path.suffix.lower()
    if ext not in SUPPORTED_EXTENSIONS:
        raise FeatureError(f"{path}: unsupported feature file extension {ext!r} "
                           f"(supported: {', '.join(SUPPORTED_EXTENSIONS)})")
    return ext


def _from_container(obj: Any, path: Path) -> Any:
    """A bare array/tensor, or the one array inside a mapping (by a conventional key, or the only value)."""
    if isinstance(obj, dict) or hasattr(obj, "files"):  # dict, or np.lib.npyio.NpzFile
        keys = list(obj.files if hasattr(obj, "files") else obj.keys())
        for key in _ARRAY_KEYS:
            if key in keys:
                return obj[key]
        if len(keys) == 1:
            return obj[keys[0]]
        raise FeatureError(f"{path}: holds several arrays {keys}; expected one, or one named "
                           f"{' / '.join(_ARRAY_KEYS)}")
    return obj


def _read_csv(path: Path) -> np.ndarray:
    with open(path, encoding="utf8") as f:
        text = f.read()
    first = text.split("\n", 1)[0]
    try:
        [float(x) for x in first.split(",") if x.strip()]
        skip = 0
    except ValueError:  # a header row (column names)
        skip = 1
    return np.loadtxt(io.StringIO(text), delimiter=",", skiprows=skip, dtype=np.float32, ndmin=2)


def read_feature_array(path: str | Path, *, mmap: bool = True) -> np.ndarray:
    """Read a feature file as stored (any float dtype), memory-mapped for .npy/.pt when ``mmap``. Raises FeatureError."""
    path = Path(path)
    ext = _extension(path)
    if not path.exists():
        raise FeatureError(f"feature file {path} does not exist")
    try:
        if ext == ".npy":
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        elif ext == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                array = np.asarray(_from_container(npz, path))
        elif ext in (".pt", ".pth"):
            try:
                obj = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError:  # files in torch's legacy (non-zip) format cannot be memory-mapped
                obj = torch.load(path, map_location="cpu", weights_only=True)
            array = _from_container(obj, path)
        elif ext == ".pkl":
            with open(path, "rb") as f:
                array = _from_container(pickle.load(f), path)
        else:
            array = _read_csv(path)
    except FeatureError:
        raise
    except Exception as err:  # corrupt or truncated files surface here with the library's own message
        raise FeatureError(f"{path}: cannot be read as a {ext} feature file ({type(err).__name__}: {err})") from None
    if isinstance(array, torch.Tensor):
        array = array.numpy()
    if not isinstance(array, np.ndarray):  # lists, scalars (np.memmap is kept as it is)
        array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.number):
        raise FeatureError(f"{path}: holds {array.dtype} data, not numbers")
    return array


def feature_length(path: str | Path) -> int:
    """Number of time steps T in a [T, C] feature file (cheap for memory-mapped formats)."""
    array = read_feature_array(path, mmap=True)
    if array.ndim < 1:
        raise FeatureError(f"{path}: expected a [T, C] array, got a scalar")
    return int(_as_2d(array, path).shape[0])


def _as_2d(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim > 2:  # e.g. [T, 1, C] or [1, T, C]: drop singleton axes
        array = array.reshape([n for n in array.shape if n != 1] or [1])
    if array.ndim != 2:
        raise FeatureError(f"{path}: expected a [T, C] array (time steps x channels), got shape {array.shape}")
    return array


def load_feature_file(path: str | Path, input_dim: int | None = None, *, video_id: str | None = None) -> np.ndarray:
    """Read a [T, C] feature file as float32 (possibly a read-only memory map), checking the dimension and that
    every value is finite.

    Raises FeatureError naming the file, the video and the problem (wrong dimension, transposed, NaN/inf, empty).
    """
    path = Path(path)
    where = f"{path} (video {video_id!r})" if video_id is not None else str(path)
    array = _as_2d(read_feature_array(path), path)
    if input_dim is not None and array.shape[1] != input_dim:
        hint = " (it looks transposed: files store [T, C])" if array.shape[0] == input_dim else ""
        raise FeatureError(f"{where}: feature dimension is {array.shape[1]} (shape {array.shape}), but "
                           f"dataset.input_dim is {input_dim}{hint}")
    if array.shape[0] == 0:
        raise FeatureError(f"{where}: holds no time steps (shape {array.shape})")
    array = array.astype(np.float32, copy=False)  # no copy for float32 files: stays memory-mapped
    bad = ~np.isfinite(array)
    if bad.any():
        t, c = np.argwhere(bad)[0]
        raise FeatureError(f"{where}: {int(bad.sum())} non-finite value(s) (NaN/inf), first at time step {t}, "
                           f"channel {c} ({array[t, c]})")
    return array


def write_feature_file(path: str | Path, feats: np.ndarray) -> Path:
    """Write a [T, C] array in the format given by the extension, atomically (:func:`tal_kit.feature_files.
    write_features`); an extension the kit cannot read is a FeatureError naming the file."""
    path = Path(path)
    _extension(path)
    return write_features(path, feats)


class FeatureSource:
    """The features of one dataset: ``source.load(video_id)`` -> float32 tensor [C, T] on the config's grid.

    Args:
        folder: the features fed to the model.
        file_prefix, file_ext: file naming (``<prefix><video_id><ext>``).
        input_dim: expected channel count C.
        reference_folder: optional folder whose per-video length T defines the grid (same naming); the features
            are linearly resampled to that length.
    """

    def __init__(self, folder: str | Path, *, file_prefix: str | None = "", file_ext: str = ".npy",
                 input_dim: int | None = None, reference_folder: str | Path | None = None):
        self.folder = Path(folder)
        self.file_prefix = file_prefix or ""
        self.file_ext = file_ext
        self.input_dim = input_dim
        self.reference_folder = Path(reference_folder) if reference_folder is not None else None

    @classmethod
    def from_config(cls, cfg: Config, data_root: str | Path | None = None) -> "FeatureSource":
        from tal_kit.config import resolve_path

        d = cfg.dataset
        return cls(resolve_path(cfg, data_root, d.feat_folder), file_prefix=d.file_prefix, file_ext=d.file_ext,
                   input_dim=d.input_dim, reference_folder=resolve_path(cfg, data_root, d.reference_feat_folder))

    def path(self, video_id: str) -> Path:
        return feature_path(self.folder, video_id, self.file_prefix, self.file_ext)

    def reference_path(self, video_id: str) -> Path | None:
        if self.reference_folder is None:
            return None
        return feature_path(self.reference_folder, video_id, self.file_prefix, self.file_ext)

    def missing(self, video_ids: Iterable[str]) -> list[Path]:
        """Every feature (and reference) file that does not exist for these videos."""
        missing = []
        for vid in video_ids:
            for p in (self.path(vid), self.reference_path(vid)):
                if p is not None and not p.exists():
                    missing.append(p)
        return missing

    def load(self, video_id: str) -> torch.Tensor:
        """float32 [C, T] features of one video, resampled onto the reference length when there is one."""
        feats = load_feature_file(self.path(video_id), self.input_dim, video_id=video_id)
        feats = torch.from_numpy(np.array(feats.T, order="C"))  # a writable copy, channels first
        ref = self.reference_path(video_id)
        if ref is not None:
            feats = resample_features(feats, feature_length(ref))
        return feats
