"""Fingerprinted artefact cache: engines and prepared ONNX variants, each with a JSON manifest.

Layout: CACHE/engines/<model stem>/<precision>-<key[:16]>.<suffix> plus the same name + ".json".
The key is the sha256 of everything that changes the artefact (see `fingerprint`). The artefact
is written to a temporary file, fsynced and renamed; the manifest is written the same way after
it, so an artefact without a manifest is an interrupted write. On load the manifest, size and
sha256 are checked (plus a caller's check, e.g. the TensorRT version) before anyone deserializes
the file; a bad entry is moved to `rejected/` with a log line saying why, and rebuilt.
"""

import hashlib
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, NamedTuple, Optional

from edge_agent.errors import EngineError

log = logging.getLogger(__name__)
MANIFEST_FORMAT = 1


def fingerprint(fields: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


class CacheEntry(NamedTuple):
    artifact: Path
    manifest: Dict[str, Any]


class EngineCache:
    def __init__(self, root: Path, keep_last: int = 3) -> None:
        self.root = root / "engines"
        self.keep_last = keep_last

    def ensure_writable(self) -> None:
        """EngineError naming the directory and the fix when the cache cannot be written."""
        probe = self.root / ".write-test-{}".format(os.getpid())
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise EngineError(
                "engine cache directory {} is not writable ({}). Without it every start rebuilds. Give the "
                "service user write access (e.g. `sudo chown -R edge-agent {}`) or set paths.cache_dir to a "
                "writable folder.".format(self.root, exc.strerror or exc, self.root)) from None

    def paths(self, stem: str, precision: str, key: str, suffix: str) -> CacheEntry:
        folder = self.root / stem
        name = "{}-{}{}".format(precision, key[:16], suffix)
        return CacheEntry(folder / name, {"path": str(folder / (name + ".json"))})

    def load(self, stem: str, precision: str, key: str, suffix: str,
             check: Optional[Callable[[Path, Dict[str, Any]], Optional[str]]] = None) -> Optional[CacheEntry]:
        """The verified entry for `key`, or None (a bad entry is moved aside first)."""
        artifact, meta = self.paths(stem, precision, key, suffix)
        manifest_path = Path(meta["path"])
        if not manifest_path.exists():
            if artifact.exists():
                self._move_aside(artifact, manifest_path, "it has no manifest (an interrupted write)")
            return None
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            self._move_aside(artifact, manifest_path, "its manifest is unreadable ({})".format(exc))
            return None
        reason = self._problem(artifact, manifest, key)
        if reason is None and check is not None and manifest.get("artifact_sha256"):
            reason = check(artifact, manifest)
        if reason is not None:
            self._move_aside(artifact, manifest_path, reason)
            return None
        return CacheEntry(artifact, manifest)

    @staticmethod
    def _problem(artifact: Path, manifest: Dict[str, Any], key: str) -> Optional[str]:
        if manifest.get("key") != key or manifest.get("format") != MANIFEST_FORMAT:
            return "its manifest belongs to another key or format"
        if manifest.get("artifact_sha256") is None:
            return None  # a rejected candidate: only the gate verdict is kept
        if not artifact.exists():
            return "the file is missing"
        size = artifact.stat().st_size
        if size == 0:
            return "the file is empty (0 bytes, an interrupted write)"
        if size != manifest.get("artifact_bytes"):
            return "the file has {} bytes, the manifest says {} (truncated)".format(
                size, manifest.get("artifact_bytes"))
        if file_sha256(artifact) != manifest.get("artifact_sha256"):
            return "its sha256 differs from the manifest (corrupt)"
        return None

    def _move_aside(self, artifact: Path, manifest_path: Path, reason: str) -> None:
        rejected = artifact.parent / "rejected"
        rejected.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for path in (artifact, manifest_path):
            if path.exists():
                os.replace(str(path), str(rejected / "{}.{}".format(path.name, stamp)))
        log.warning("cached %s moved to %s and will be rebuilt: %s", artifact.name, rejected, reason)

    def store(self, stem: str, precision: str, key: str, suffix: str, produce: Optional[Callable[[Path], None]],
              manifest: Dict[str, Any]) -> CacheEntry:
        """Write the artefact via `produce(temp_path)` (None: a manifest-only verdict) and its manifest."""
        artifact, meta = self.paths(stem, precision, key, suffix)
        artifact.parent.mkdir(parents=True, exist_ok=True)
        manifest = dict(manifest, key=key, format=MANIFEST_FORMAT, artifact=artifact.name,
                        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"), created_unix=time.time())
        if produce is not None:
            temp = artifact.with_name(".{}.tmp-{}".format(artifact.name, os.getpid()))
            try:
                produce(temp)
                if not temp.exists() or temp.stat().st_size == 0:
                    raise EngineError("preparing {} produced no output".format(artifact.name))
                _fsync(temp)
                manifest.update(artifact_bytes=temp.stat().st_size, artifact_sha256=file_sha256(temp))
                os.replace(str(temp), str(artifact))
            finally:
                if temp.exists():
                    temp.unlink()
        else:
            manifest.update(artifact_bytes=None, artifact_sha256=None)
        write_json_atomic(Path(meta["path"]), manifest)
        _fsync_dir(artifact.parent)
        return CacheEntry(artifact, manifest)

    def update_manifest(self, entry: CacheEntry, **fields: Any) -> CacheEntry:
        manifest = dict(entry.manifest, **fields)
        write_json_atomic(entry.artifact.with_name(entry.artifact.name + ".json"), manifest)
        return CacheEntry(entry.artifact, manifest)

    def prune(self, stem: str, keep: List[Path]) -> List[Path]:
        """Delete all but the `keep_last` newest entries of a model (never those in `keep`)."""
        folder = self.root / stem
        manifests = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        removed = []
        for manifest in manifests[self.keep_last:]:
            artifact = manifest.with_name(manifest.name[:-len(".json")])
            if artifact in keep:
                continue
            for path in (artifact, manifest):
                if path.exists():
                    path.unlink()
            removed.append(artifact)
            log.info("pruned old cache entry %s (engine.cache.keep_last = %d)", artifact.name, self.keep_last)
        return removed


def write_json_atomic(path: Path, data: Dict[str, Any]) -> None:
    temp = path.with_name(".{}.tmp-{}".format(path.name, os.getpid()))
    try:
        with temp.open("w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(str(temp), str(path))
    finally:
        if temp.exists():
            temp.unlink()


def _fsync(path: Path) -> None:
    with path.open("rb+") as handle:
        os.fsync(handle.fileno())


def _fsync_dir(folder: Path) -> None:
    descriptor = os.open(str(folder), os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
