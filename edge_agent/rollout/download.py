"""Fetch a model into the cache directory, resuming where an interrupted transfer stopped.

The bytes go to `<sha256>.part` beside their final name; each attempt asks the server for the
rest (`Range: bytes=N-`) and appends, so a flaky floor network costs only the missing part. A
server that ignores Range (200 instead of 206) is read from the start again. The file is renamed
to `<sha256>.onnx` only after its size and SHA-256 match the request, so nothing half-written or
foreign is ever built or served. Disk space is checked before the first byte.
"""

import logging
import os
import shutil
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

from edge_agent.engine.cache import file_sha256
from edge_agent.errors import EdgeAgentError
from edge_agent.rollout.config import DownloadConfig

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
DownloadProgress = Callable[[int, int], None]  # (bytes so far, total)


class DownloadError(EdgeAgentError):
    """The model could not be fetched or is not the file the request names."""


def fetch(url: str, sha256: str, size: int, folder: Path, config: DownloadConfig,
          progress: DownloadProgress = lambda done, total: None, stop: Optional[Callable[[], bool]] = None) -> Path:
    """The verified model file in `folder` (already there: returned at once)."""
    if size > config.max_bytes:
        raise DownloadError("the model is {:.1f} MB, more than rollout.download.max_bytes ({:.1f} MB)".format(
            size / 2**20, config.max_bytes / 2**20))
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / (sha256 + ".onnx")
    if final.exists() and final.stat().st_size == size and file_sha256(final) == sha256:
        progress(size, size)
        return final
    part = folder / (sha256 + ".part")
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    _check_disk(folder, size - have, config)
    local = _local_path(url)
    if local is not None:
        _copy_local(local, part, size, progress)
    else:
        _download(url, part, size, config, progress, stop or (lambda: False))
    verify(part, sha256, size)
    os.replace(str(part), str(final))
    return final


def verify(path: Path, sha256: str, size: int) -> None:
    actual_size = path.stat().st_size
    if actual_size != size:
        path.unlink()
        raise DownloadError("the model has {} bytes but the request says {}: refused and deleted".format(
            actual_size, size))
    actual = file_sha256(path)
    if actual != sha256:
        path.unlink()
        raise DownloadError("the model's SHA-256 is {} but the request says {}: refused and deleted (a corrupt "
                            "transfer or the wrong file)".format(actual, sha256))


def _check_disk(folder: Path, needed: int, config: DownloadConfig) -> None:
    free = shutil.disk_usage(str(folder)).free
    reserve = config.min_free_mb * 2**20
    if free - needed < reserve:
        raise DownloadError("not enough disk space in {}: the model needs {:.1f} MB and {:.1f} MB must stay free "
                            "(rollout.download.min_free_mb), but only {:.1f} MB is free. Free space or prune old "
                            "engines".format(folder, needed / 2**20, reserve / 2**20, free / 2**20))


def _local_path(url: str) -> Optional[Path]:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme == "" and url.startswith("/"):
        return Path(url)
    raise DownloadError("model URL {!r}: use http://, https://, file:// or an absolute path".format(url))


def _copy_local(source: Path, part: Path, size: int, progress: DownloadProgress) -> None:
    try:
        with open(source, "rb") as src, open(part, "wb") as dst:
            done = 0
            for block in iter(lambda: src.read(CHUNK), b""):
                dst.write(block)
                done += len(block)
                progress(min(done, size), size)
            dst.flush()
            os.fsync(dst.fileno())
    except OSError as exc:
        raise DownloadError("cannot read the model file {}: {}".format(source, exc.strerror or exc)) from None


def _opener(config: DownloadConfig) -> urllib.request.OpenerDirector:
    handlers = []
    if config.proxy:
        handlers.append(urllib.request.ProxyHandler({"http": config.proxy, "https": config.proxy}))
    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise DownloadError("rollout.download.ca_file {}: cannot load it: {}".format(config.ca_file, exc)) from None
    handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def _download(url: str, part: Path, size: int, config: DownloadConfig, progress: DownloadProgress,
              stop: Callable[[], bool]) -> None:
    opener = _opener(config)
    problem = ""
    for attempt in range(1, config.attempts + 1):
        have = part.stat().st_size if part.exists() else 0
        if have == size:
            return
        if stop():
            raise DownloadError("download stopped: the agent is shutting down")
        try:
            _attempt(opener, url, part, have, size, config.timeout_s, progress)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            problem = _explain(exc)
            log.warning("model download attempt %d/%d stopped at %d of %d bytes: %s", attempt, config.attempts,
                        part.stat().st_size if part.exists() else 0, size, problem)
            if attempt < config.attempts:
                time.sleep(min(2.0 ** (attempt - 1), 10.0))
            continue
    have = part.stat().st_size if part.exists() else 0
    if have != size:
        raise DownloadError("download of {} failed after {} attempts at {} of {} bytes: {}".format(
            _safe_url(url), config.attempts, have, size, problem or "the server sent too few bytes"))


def _attempt(opener: urllib.request.OpenerDirector, url: str, part: Path, have: int, size: int, timeout: float,
             progress: DownloadProgress) -> None:
    request = urllib.request.Request(url, headers={"Range": "bytes={}-".format(have)} if have else {})
    with opener.open(request, timeout=timeout) as response:
        status = response.getcode()
        if have and status == 200:
            log.info("the model server ignores Range requests; downloading from the start")
            have = 0
        elif have and status != 206:
            raise ValueError("unexpected HTTP status {} to a Range request".format(status))
        with open(part, "r+b" if have else "wb") as handle:
            handle.seek(have)
            handle.truncate()
            done = have
            while True:
                block = response.read(CHUNK)
                if not block:
                    break
                if done + len(block) > size:
                    raise ValueError("the server sent more than the {} bytes the request names".format(size))
                handle.write(block)
                done += len(block)
                progress(done, size)
            handle.flush()
            os.fsync(handle.fileno())


def _explain(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return "HTTP {} {}".format(exc.code, exc.reason)
    if isinstance(exc, urllib.error.URLError):
        reason = exc.reason
        if isinstance(reason, ssl.SSLCertVerificationError):
            return "TLS certificate check failed ({}); set rollout.download.ca_file".format(reason.verify_message)
        return str(reason)
    return str(exc) or type(exc).__name__


def _safe_url(url: str) -> str:
    """The URL without credentials or query (tokens), for logs and reports."""
    parsed = urllib.parse.urlparse(url)
    host = parsed.hostname or ""
    if parsed.port:
        host += ":{}".format(parsed.port)
    return urllib.parse.urlunparse((parsed.scheme, host, parsed.path, "", "", ""))
