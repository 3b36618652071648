"""``fetch`` against a stand-in hub on loopback (tests/hub_standin.py): full download, resumed download (a part left
by an earlier run, and a connection dropped mid-file), a corrupt file rejected, and a disk already holding the
files. The sha256 checked is the hub's own (X-Linked-Etag), computed here independently with hashlib."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from tal_kit import fetch as fx
from tal_kit.__main__ import main
from tal_kit.config import load_config
from tests.hub_standin import StandInHub, HostedFile, serve

ARCHIVE = fx.ARCHIVES["thumos14"].filename
VIDEOS = ["video_test_0000004", "video_test_0000006", "video_validation_0000051"]


def _archive_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """A .tar.gz laid out like the hosted one: a top folder holding <video>.npy files."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, array in arrays.items():
            payload = io.BytesIO()
            np.save(payload, array)
            info = tarfile.TarInfo(f"th14_mae_g_16_4/{name}.npy")
            info.size = payload.tell()
            payload.seek(0)
            tar.addfile(info, payload)
    return buffer.getvalue()


@pytest.fixture
def arrays():
    rng = np.random.default_rng(0)
    return {v: rng.standard_normal((40 + 7 * i, 1408)).astype(np.float32) for i, v in enumerate(VIDEOS)}


@pytest.fixture
def hub(arrays, monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    standin = StandInHub()
    standin.files[f"{fx.REPO_ID}/{ARCHIVE}"] = HostedFile(_archive_bytes(arrays))
    server, _ = serve(standin)
    yield standin
    server.shutdown()
    server.server_close()


def _fetch(hub, root, logs=None, **kwargs):
    return fx.fetch("thumos14", root, endpoint=hub.endpoint, progress=False,
                    log=(logs.append if logs is not None else lambda *_: None), **kwargs)


def _assert_unpacked(folder, arrays):
    assert sorted(p.stem for p in folder.glob("*.npy")) == sorted(arrays)
    for name, array in arrays.items():
        np.testing.assert_array_equal(np.load(folder / f"{name}.npy"), array)


def test_full_download_unpacks_into_the_preset_layout(hub, arrays, tmp_path):
    logs: list[str] = []
    folder = _fetch(hub, tmp_path / "thumos14", logs)
    assert folder == tmp_path / "thumos14" / "mae_features"  # thumos14's dataset.feat_folder
    _assert_unpacked(folder, arrays)
    stamp = json.loads((folder / fx.STAMP).read_text())
    assert stamp["sha256"] == hub.files[f"{fx.REPO_ID}/{ARCHIVE}"].sha256
    assert not (tmp_path / "thumos14" / ".fetch").exists()  # no archive, part or staging folder left
    heads = [r for r in hub.requests if r[0] == "HEAD"]
    assert heads[0][1] == f"/datasets/{fx.REPO_ID}/resolve/main/{ARCHIVE}"
    assert [r[2] for r in hub.gets()] == [None]  # one GET of the whole file
    text = "\n".join(logs)
    assert "annotations/thumos14.json" in text  # what else the preset needs
    assert "--set dataset.reference_feat_folder=null" in text  # no I3D folder: the documented option


def test_a_part_left_by_an_interrupted_run_is_resumed(hub, arrays, tmp_path):
    hosted = hub.files[f"{fx.REPO_ID}/{ARCHIVE}"]
    work = tmp_path / "d" / ".fetch"
    work.mkdir(parents=True)
    cut = len(hosted.content) // 3
    (work / f"{ARCHIVE}.part").write_bytes(hosted.content[:cut])
    (work / f"{ARCHIVE}.part.json").write_text(json.dumps({"sha256": hosted.sha256}))
    _assert_unpacked(_fetch(hub, tmp_path / "d"), arrays)
    assert [r[2] for r in hub.gets()] == [f"bytes={cut}-"]  # only the rest was asked for


def test_a_part_of_another_file_version_is_discarded(hub, arrays, tmp_path):
    work = tmp_path / "d" / ".fetch"
    work.mkdir(parents=True)
    (work / f"{ARCHIVE}.part").write_bytes(b"x" * 100)
    (work / f"{ARCHIVE}.part.json").write_text(json.dumps({"sha256": "0" * 64}))
    _assert_unpacked(_fetch(hub, tmp_path / "d"), arrays)
    assert [r[2] for r in hub.gets()] == [None]


def test_a_dropped_connection_resumes_where_it_stopped(hub, arrays, tmp_path, monkeypatch):
    from huggingface_hub import constants

    # the client writes whole chunks (10 MB on the real hub); small ones make a partial body count here
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 1 << 14)
    hosted = hub.files[f"{fx.REPO_ID}/{ARCHIVE}"]
    half = len(hosted.content) // 2
    hosted.drop_after = half
    _assert_unpacked(_fetch(hub, tmp_path / "d"), arrays)
    ranges = [r[2] for r in hub.gets()]
    assert ranges[0] is None and len(ranges) == 2
    assert 0 < int(ranges[1][len("bytes="):-1]) <= half  # the retry asked only for what was missing


def test_a_corrupt_download_is_rejected_and_deleted(hub, tmp_path):
    hosted = hub.files[f"{fx.REPO_ID}/{ARCHIVE}"]
    corrupt = bytearray(hosted.content)
    corrupt[len(corrupt) // 2] ^= 0xFF
    hosted.served = bytes(corrupt)
    with pytest.raises(fx.FetchError, match="sha256 .* does not match the hub's"):
        _fetch(hub, tmp_path / "d")
    assert not (tmp_path / "d" / "mae_features").exists()
    assert not list((tmp_path / "d" / ".fetch").glob("*.part"))  # nothing corrupt is kept to resume from


def test_a_disk_already_holding_the_files_downloads_nothing(hub, arrays, tmp_path):
    _fetch(hub, tmp_path / "d")
    hub.requests.clear()
    logs: list[str] = []
    _assert_unpacked(_fetch(hub, tmp_path / "d", logs), arrays)
    assert hub.requests == []  # not even a HEAD
    assert any("nothing to download" in line for line in logs)


def test_a_kept_archive_is_verified_not_downloaded_again(hub, arrays, tmp_path):
    folder = _fetch(hub, tmp_path / "d", keep_archive=True)
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    hub.requests.clear()
    _assert_unpacked(_fetch(hub, tmp_path / "d"), arrays)
    assert hub.gets() == [] and len(hub.requests) == 1  # one HEAD for the sha256, no download


def test_foreign_files_in_the_feature_folder_are_not_overwritten(hub, tmp_path, capsys):
    folder = tmp_path / "d" / "mae_features"
    folder.mkdir(parents=True)
    (folder / "mine.npy").write_bytes(b"keep me")
    assert main(["fetch", "thumos14", "--to", str(tmp_path / "d"), "--endpoint", hub.endpoint, "--no-progress"]) == 1
    assert "did not unpack" in capsys.readouterr().err
    assert (folder / "mine.npy").read_bytes() == b"keep me" and hub.requests == []


def test_missing_file_on_the_hub_is_one_clear_error(hub, tmp_path, capsys):
    del hub.files[f"{fx.REPO_ID}/{ARCHIVE}"]
    assert main(["fetch", "thumos14", "--to", str(tmp_path / "d"), "--endpoint", hub.endpoint]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ARCHIVE in err and len(err.strip().splitlines()) == 1


def test_running_without_the_reference_grid_is_a_config_option():
    cfg = load_config("thumos14", ["dataset.reference_feat_folder=null"])
    assert cfg.dataset.reference_feat_folder is None


def test_fineaction_next_steps_name_the_extension_override(tmp_path):
    folder = tmp_path / "features"
    folder.mkdir()
    np.save(folder / "v_x.npy", np.zeros((3, 1408), np.float32))
    lines = fx.next_steps("fineaction", tmp_path, folder)
    assert any("--set dataset.file_ext=.npy" in line for line in lines)


@pytest.mark.filterwarnings("ignore:skipping 1 video")  # the dry-run folder has features for a few videos only
def test_a_missing_reference_grid_names_the_option_and_the_option_runs(tmp_path):
    import shutil

    from tal_kit.data.dataset import TALDataset
    from tal_kit.data.features import FeatureError
    from tal_kit.dryrun import make_dryrun_data

    info = make_dryrun_data("thumos14", tmp_path, videos_per_split=1)
    shutil.rmtree(info["reference_features"])
    cfg = load_config("thumos14", ["dataset.num_classes=5"])  # the generated annotations have 5 labels
    with pytest.raises(FeatureError, match=r"i3d_features does not exist: set dataset.reference_feat_folder: null"):
        TALDataset(cfg, tmp_path, split=cfg.train_split, is_training=False)
    own_grid = load_config("thumos14", ["dataset.num_classes=5", "dataset.reference_feat_folder=null",
                                        "dataset.missing_features=skip"])
    dataset = TALDataset(own_grid, tmp_path, split=own_grid.train_split, is_training=False)
    item = dataset[0]
    stored = np.load(f"{info['features']}/{item['video_id']}.npy")
    np.testing.assert_array_equal(item["feats"].numpy(), stored.T)  # the file's own grid, not resampled
