"""Model download against a real HTTP server on loopback: resume after a cut transfer, a server that
ignores Range, size/SHA-256 refusal, disk space checked before the first byte, local files."""

import hashlib
import os

import pytest

from edge_agent.rollout.config import DownloadConfig
from edge_agent.rollout.download import DownloadError, fetch

from .model_server import ModelServer


@pytest.fixture
def served(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    data = os.urandom(3 * 2**20 + 123)  # several chunks
    (folder / "model.onnx").write_bytes(data)
    return folder, data, hashlib.sha256(data).hexdigest()


SETTINGS = DownloadConfig(min_free_mb=0, timeout_s=5, attempts=3)


def test_a_cut_transfer_resumes_with_a_range_request(tmp_path, served):
    folder, data, digest = served
    progress = []
    with ModelServer(folder) as server:
        server.cut_after["model.onnx"] = 1_000_000
        path = fetch(server.url("model.onnx"), digest, len(data), tmp_path / "cache", SETTINGS,
                     lambda done, total: progress.append(done))
        assert [r["range"] for r in server.requests] == [None, "bytes=1000000-"]
    assert path.read_bytes() == data and path.name == digest + ".onnx"
    assert not (tmp_path / "cache" / (digest + ".part")).exists()
    assert progress[-1] == len(data) and min(p for p in progress if p > 1_000_000) > 1_000_000


def test_a_server_ignoring_range_is_read_again_from_the_start(tmp_path, served):
    folder, data, digest = served
    with ModelServer(folder, honour_range=False) as server:
        server.cut_after["model.onnx"] = 500_000
        path = fetch(server.url("model.onnx"), digest, len(data), tmp_path / "cache", SETTINGS)
    assert path.read_bytes() == data


def test_wrong_sha256_or_size_is_refused_and_nothing_is_kept(tmp_path, served):
    folder, data, digest = served
    with ModelServer(folder) as server:
        with pytest.raises(DownloadError, match="SHA-256 is {}".format(digest)):
            fetch(server.url("model.onnx"), "0" * 64, len(data), tmp_path / "cache", SETTINGS)
        with pytest.raises(DownloadError, match="failed after 3 attempts"):
            fetch(server.url("model.onnx"), digest, len(data) - 10, tmp_path / "cache", SETTINGS)
        with pytest.raises(DownloadError, match="HTTP 404"):
            fetch(server.url("missing.onnx"), digest, len(data), tmp_path / "cache", SETTINGS)
    assert list((tmp_path / "cache").iterdir()) in ([], [tmp_path / "cache" / (digest + ".part")])
    assert not (tmp_path / "cache" / (digest + ".onnx")).exists()


def test_disk_space_is_checked_before_the_first_byte(tmp_path, served):
    folder, data, digest = served
    with ModelServer(folder) as server:
        with pytest.raises(DownloadError, match="not enough disk space"):
            fetch(server.url("model.onnx"), digest, len(data), tmp_path / "cache",
                  DownloadConfig(min_free_mb=10**9))
        assert server.requests == []


def test_local_files_and_the_size_limit(tmp_path, served):
    folder, data, digest = served
    path = fetch(str(folder / "model.onnx"), digest, len(data), tmp_path / "cache", SETTINGS)
    assert path.read_bytes() == data
    assert fetch("file://" + str(folder / "model.onnx"), digest, len(data), tmp_path / "cache", SETTINGS) == path
    with pytest.raises(DownloadError, match="max_bytes"):
        fetch(str(folder / "model.onnx"), digest, len(data), tmp_path / "c2", DownloadConfig(max_bytes=1024))
    with pytest.raises(DownloadError, match="use http"):
        fetch("ftp://example/model.onnx", digest, len(data), tmp_path / "c3", SETTINGS)
