"""``python -m tal_kit fetch thumos14|fineaction --to DIR``: the VideoMAEv2-g TAL features that are still online.

InternVideo's own feature links are dead; OpenGVLab keeps the VideoMAEv2-g features of THUMOS-14 and FineAction on
the Hugging Face hub (dataset ``OpenGVLab/VideoMAEv2-TAL-Features``, EXTRACTION.md §1). This command

1. asks the hub for the archive's metadata (one HEAD request: size, commit, and the LFS ``X-Linked-Etag``, which
   is the file's sha256);
2. downloads it with ``huggingface_hub`` into ``DIR/.fetch/<archive>.part``, resuming a part left by an interrupted
   run (an HTTP Range request; a part made from another version of the file is discarded);
3. checks the sha256 of the whole file against the hub's and deletes a part that does not match;
4. unpacks into a staging folder and renames the feature folder into place (the preset's ``dataset.feat_folder``),
   so the folder is either absent or complete, never half-written; a stamp in it records the archive's sha256, so
   running the command again downloads nothing;
5. says what else the preset needs (annotations; THUMOS's I3D reference grid or the option to run without it) and
   which overrides make the preset read these files.

The endpoint is huggingface_hub's (``HF_ENDPOINT``, or ``--endpoint``), so a mirror works too.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tal_kit.config import ConfigError, load_config, resolve_path
from tal_kit.atomic import write_json_atomic

REPO_ID = "OpenGVLab/VideoMAEv2-TAL-Features"
REPO_TYPE = "dataset"
STAMP = ".tal_kit_fetch.json"  # in the unpacked feature folder: which archive it came from
FEATURE_EXTENSIONS = (".npy", ".npz", ".pt", ".pth", ".pkl", ".csv")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Archive:
    """One archive on the hub and the preset that reads it."""

    preset: str
    filename: str
    size_note: str  # as the hub lists it, for the message before a long download


ARCHIVES: dict[str, Archive] = {
    "thumos14": Archive("thumos14", "th14_mae_g_16_4.tar.gz", "3.35 GB"),
    "fineaction": Archive("fineaction", "fineaction_mae_g.tar.gz", "18.9 GB"),
}


class FetchError(RuntimeError):
    """The download or its check failed; the message says what to do."""


def _sha256(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def hub_metadata(archive: Archive, revision: str, endpoint: str | None) -> dict[str, Any]:
    """Size, sha256, commit and download location of ``archive`` as the hub reports them (one HEAD request)."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(REPO_ID, archive.filename, repo_type=REPO_TYPE, revision=revision, endpoint=endpoint)
    try:
        meta = get_hf_file_metadata(url, endpoint=endpoint)
    except Exception as err:  # huggingface_hub raises its own HTTP and offline errors; all mean the same here
        raise FetchError(f"{url}: the hub did not answer with the file's metadata ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else err!r})") from err
    sha256 = (meta.etag or "").lower()
    if not _SHA256.match(sha256):
        raise FetchError(f"{url}: the hub gives no sha256 for this file (ETag {meta.etag!r}), so the download "
                         "could not be verified; not downloading")
    if meta.size is None:
        raise FetchError(f"{url}: the hub gives no size for this file; not downloading")
    return {"url": url, "location": meta.location, "sha256": sha256, "size": int(meta.size),
            "commit": meta.commit_hash, "revision": revision}


def download_verified(meta: dict[str, Any], work_dir: Path, filename: str, log: Callable[[str], None] = print,
                      progress: bool = True) -> Path:
    """Download (or resume) ``filename`` into ``work_dir`` and check its sha256; returns the verified archive."""
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    work_dir.mkdir(parents=True, exist_ok=True)
    done = work_dir / filename
    part = work_dir / f"{filename}.part"
    part_meta = work_dir / f"{filename}.part.json"
    if done.exists() and done.stat().st_size == meta["size"] and _sha256(done) == meta["sha256"]:
        log(f"{done}: already downloaded and verified")
        return done
    if part.exists():
        recorded = json.loads(part_meta.read_text()) if part_meta.exists() else {}
        if recorded.get("sha256") != meta["sha256"] or part.stat().st_size > meta["size"]:
            log(f"{part}: left by a download of another version of the file; starting again")
            part.unlink()
    write_json_atomic(part_meta, {"sha256": meta["sha256"], "size": meta["size"], "commit": meta["commit"]})
    resume = part.stat().st_size if part.exists() else 0
    log(f"downloading {filename} ({meta['size'] / 1e9:.2f} GB, commit {meta['commit']})"
        + (f", resuming at {resume / 1e9:.2f} GB" if resume else ""))
    headers = build_hf_headers()
    headers["Accept-Encoding"] = "identity"  # the sha256 is of the bytes as stored
    try:
        with open(part, "ab") as handle:
            http_get(meta["location"], handle, resume_size=resume, headers=headers, expected_size=meta["size"],
                     displayed_filename=filename, tqdm_class=None if progress else _SilentBar)
    except Exception as err:  # network errors of any kind: keep the part for the next run
        reason = str(err).splitlines()[0] if str(err) else ""
        kept = part.stat().st_size if part.exists() else 0
        raise FetchError(f"downloading {filename} failed ({type(err).__name__}: {reason}); the {kept} bytes so far "
                         f"are kept in {part}: run the same command again to resume") from err
    got = _sha256(part)
    if got != meta["sha256"]:
        part.unlink()
        part_meta.unlink(missing_ok=True)
        raise FetchError(f"{filename}: sha256 {got} does not match the hub's {meta['sha256']}; the corrupt download "
                         "was deleted: run the command again")
    os.replace(part, done)
    part_meta.unlink(missing_ok=True)
    return done


class _SilentBar:
    """A tqdm stand-in that shows nothing (``--no-progress``)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def update(self, *args: Any) -> None:
        pass

    def __enter__(self) -> "_SilentBar":
        return self

    def __exit__(self, *args: Any) -> None:
        pass


def _feature_folder_in(root: Path) -> Path:
    """The folder of an unpacked archive that holds the feature files (the one with the most of them)."""
    counts: dict[Path, int] = {}
    for path in root.rglob("*"):
        if path.is_file() and path.suffix.lower() in FEATURE_EXTENSIONS:
            counts[path.parent] = counts.get(path.parent, 0) + 1
    if not counts:
        raise FetchError(f"the archive unpacked into {root} holds no feature files ({', '.join(FEATURE_EXTENSIONS)})")
    return max(counts, key=lambda folder: (counts[folder], -len(folder.parts)))


def unpack_atomically(archive_path: Path, sha256: str, target: Path, work_dir: Path) -> Path:
    """Unpack ``archive_path`` into a staging folder and rename its feature folder to ``target``."""
    staging = work_dir / "unpack.tmp"
    if staging.exists():
        shutil.rmtree(staging)  # left by an interrupted unpack
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive_path, "r:*") as tar:
            tar.extractall(staging, filter="data")  # no absolute paths, links out of the folder or devices
    except (tarfile.TarError, OSError) as err:
        shutil.rmtree(staging, ignore_errors=True)
        raise FetchError(f"{archive_path}: cannot unpack ({err})") from err
    folder = _feature_folder_in(staging)
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    write_json_atomic(folder / STAMP, {"repo": REPO_ID, "archive": archive_path.name, "sha256": sha256,
                                       "files": len(files)})
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.rmdir()  # only an empty folder gets here (checked by fetch)
    os.replace(folder, target)
    shutil.rmtree(staging, ignore_errors=True)
    return target


def _stamp(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / STAMP).read_text())
    except (OSError, ValueError):
        return None


def next_steps(preset: str, data_root: Path, feat_dir: Path) -> list[str]:
    """What the preset still needs besides the fetched features, and the overrides that make it read them."""
    cfg = load_config(preset)
    d = cfg.dataset
    lines, overrides = [], []
    extensions = {p.suffix for p in feat_dir.iterdir() if p.suffix.lower() in FEATURE_EXTENSIONS}
    if extensions and d.file_ext not in extensions:
        ext = sorted(extensions)[0]
        overrides.append(f"dataset.file_ext={ext}")
        lines.append(f"the archive's files are {ext}, the preset reads {d.file_ext}: pass --set dataset.file_ext={ext}")
    json_file = resolve_path(cfg, data_root, d.json_file)
    if json_file.exists():
        lines.append(f"annotations: {json_file} is there")
    else:
        lines.append(f"annotations: put {d.json_file} under {data_root} (data/README.md says where it comes from)")
    reference = resolve_path(cfg, data_root, d.reference_feat_folder)
    if reference is not None and not reference.exists():
        overrides.append("dataset.reference_feat_folder=null")
        lines.append(f"reference grid: {reference} is missing. InternVideo resamples the MAE features onto the I3D "
                     "grid; it is the same 16-frame/stride-4 grid, so without the I3D files pass "
                     "--set dataset.reference_feat_folder=null to use the features' own grid (data/README.md)")
    sets = "".join(f" --set {o}" for o in overrides)
    lines.append(f"then: python -m tal_kit check-data --config {preset} --data-root {data_root}{sets}")
    lines.append(f"      python -m tal_kit reproduce --config {preset} --data-root {data_root}{sets}")
    return lines


def fetch(name: str, to: str | Path, *, revision: str = "main", endpoint: str | None = None,
          keep_archive: bool = False, progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """Fetch, verify and unpack the features of ``name`` (thumos14 | fineaction) into ``to``; returns the folder."""
    if name not in ARCHIVES:
        raise ConfigError(f"fetch: unknown dataset {name!r}; the hub holds {', '.join(ARCHIVES)}")
    archive = ARCHIVES[name]
    data_root = Path(to)
    cfg = load_config(archive.preset)
    feat_dir = resolve_path(cfg, data_root, cfg.dataset.feat_folder)
    work_dir = data_root / ".fetch"
    endpoint = endpoint or os.environ.get("HF_ENDPOINT") or None  # read now, not at huggingface_hub's import

    stamp = _stamp(feat_dir)
    if stamp is not None and stamp.get("archive") == archive.filename:
        log(f"{feat_dir}: already holds {archive.filename} (sha256 {stamp['sha256'][:12]}…, verified when "
            "unpacked); nothing to download")
    else:
        if feat_dir.exists() and any(feat_dir.iterdir()):
            raise FetchError(f"{feat_dir} already holds files that this command did not unpack; move them away or "
                             f"fetch into another --to folder")
        meta = hub_metadata(archive, revision, endpoint)
        log(f"{REPO_ID}/{archive.filename}: {archive.size_note} on the hub, sha256 {meta['sha256'][:12]}…")
        archive_path = download_verified(meta, work_dir, archive.filename, log=log, progress=progress)
        log(f"sha256 verified; unpacking into {feat_dir}")
        unpack_atomically(archive_path, meta["sha256"], feat_dir, work_dir)
        if not keep_archive:
            archive_path.unlink()
        if work_dir.exists() and not any(work_dir.iterdir()):
            work_dir.rmdir()
    for line in next_steps(archive.preset, data_root, feat_dir):
        log(line)
    return feat_dir


def cli_fetch(argv: list[str]) -> int:
    """``python -m tal_kit fetch thumos14|fineaction --to DIR``"""
    parser = argparse.ArgumentParser(prog="python -m tal_kit fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=sorted(ARCHIVES), help="which features")
    parser.add_argument("--to", required=True, help="data root of the preset (features go to its feat_folder)")
    parser.add_argument("--revision", default="main", help="hub revision (branch, tag or commit; default main)")
    parser.add_argument("--endpoint", help="hub endpoint (default: huggingface_hub's, i.e. HF_ENDPOINT)")
    parser.add_argument("--keep-archive", action="store_true", help="keep the .tar.gz in DIR/.fetch after unpacking")
    parser.add_argument("--no-progress", action="store_true", help="no download progress bar")
    args = parser.parse_args(argv)
    fetch(args.dataset, args.to, revision=args.revision, endpoint=args.endpoint, keep_archive=args.keep_archive,
          progress=not args.no_progress)  # a FetchError is exit status 1, bad input 2 (tal_kit.cli)
    return 0
