"""Calibration and validation images, pushed through exactly the preprocessing inference uses.

An `ImageSet` is either a list of image files (a technician's folder) or a range of samples of
the synthetic generator (the bundled demo model's set). Its digest enters the engine cache key,
so a changed calibration set builds a new INT8 model. When no validation folder is configured,
every n-th calibration image is held out for the accuracy gate and never calibrates.

`python -m edge_agent.engine.calibration FOLDER` writes the demo model's sets as PNG files (see
calibration/README.md); they are the same pixels the in-memory demo set produces.
"""

import argparse
import hashlib
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Tuple

import cv2
import numpy as np

from edge_agent.config import DEMO_MODEL, AgentConfig, InputConfig
from edge_agent.errors import EngineError
from edge_agent.preprocess import Preprocessor
from edge_agent.synthetic import SyntheticGenerator

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DEMO_CALIBRATION_SEED = 1001
DEMO_VALIDATION_SEED = 2002
DEMO_SIZE = (320, 240)  # the synthetic camera's default frame size


class ImageSetError(EngineError):
    """Calibration or validation images are missing, unreadable or too few: the user fixes the folder.
    Not a build failure, so no precision fallback hides it (see engine.isolation.BuildFailed)."""

    falls_back = False


class ImageSet(NamedTuple):
    description: str
    files: Tuple[Path, ...] = ()
    synthetic_seed: Optional[int] = None
    synthetic_count: int = 0

    @property
    def size(self) -> int:
        return len(self.files) if self.synthetic_seed is None else self.synthetic_count

    def digest(self) -> str:
        """sha256 over the set's content: names and bytes of files, or the generator settings."""
        sha = hashlib.sha256()
        if self.synthetic_seed is not None:
            sha.update("synthetic:{}:{}:{}x{}".format(self.synthetic_seed, self.synthetic_count, *DEMO_SIZE).encode())
        for path in self.files:
            sha.update(path.name.encode())
            sha.update(_read_bytes(path))
        return sha.hexdigest()

    def frames(self) -> Iterator[np.ndarray]:
        """BGR uint8 images, in a fixed order."""
        if self.synthetic_seed is not None:
            generator = SyntheticGenerator(width=DEMO_SIZE[0], height=DEMO_SIZE[1], seed=self.synthetic_seed)
            for index in range(self.synthetic_count):
                yield generator.sample(index).image
            return
        for path in self.files:
            image = cv2.imdecode(np.frombuffer(_read_bytes(path), dtype=np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                raise ImageSetError("{}: not a readable image (PNG, JPEG, BMP or TIFF expected). Remove the file "
                                  "or replace it with a valid image.".format(path))
            yield image

    def tensors(self, spec: InputConfig) -> Iterator[np.ndarray]:
        """One preprocessed sample per image, shaped [1, ...] like the model's input."""
        preprocess = Preprocessor(spec)
        for frame in self.frames():
            batch = np.empty((1,) + preprocess.input_shape, dtype=np.float32)
            preprocess(frame, batch[0])
            yield batch


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ImageSetError("cannot read calibration/validation image {}: {}. Check the file's permissions "
                          "(the service user must be able to read it).".format(path, exc.strerror or exc)) from None


def list_images(folder: Path, what: str) -> List[Path]:
    if not folder.exists():
        raise ImageSetError("{} folder {} does not exist. Create it and copy representative images into it "
                          "(see calibration/README.md), or set the folder in the config.".format(what, folder))
    if not folder.is_dir():
        raise ImageSetError("{} folder {} is not a folder.".format(what, folder))
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    except OSError as exc:
        raise ImageSetError("cannot list {} folder {}: {}. Give the service user read access to it.".format(
            what, folder, exc.strerror or exc)) from None
    if not files:
        raise ImageSetError("{} folder {} holds no images ({}). Copy 100-500 representative images into it "
                          "(see calibration/README.md).".format(what, folder, ", ".join(IMAGE_SUFFIXES)))
    return files


def _evenly(files: List[Path], count: int) -> List[Path]:
    if len(files) <= count:
        return files
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def validation_set(config: AgentConfig) -> ImageSet:
    """The gate's held-out images: engine.gate.validation_folder, else every n-th image of the calibration
    folder (kept out of calibration), else the demo's synthetic generator. Its description says which."""
    calibration = config.engine.calibration
    gate = config.engine.gate
    if gate.validation_folder is not None:
        return ImageSet(str(gate.validation_folder), files=tuple(
            _evenly(list_images(gate.validation_folder, "engine.gate.validation"), gate.validation_images)))
    if calibration.folder is not None:
        files = list_images(calibration.folder, "engine.calibration")
        held = _held_out(files, gate.validation_images)
        return ImageSet("{} (every {}th image, held out from calibration)".format(
            calibration.folder, _hold_out_step(files, gate.validation_images)), files=tuple(held))
    demo = config.model.path.resolve() == DEMO_MODEL.resolve()
    return ImageSet("demo synthetic validation set (seed {}){}".format(
        DEMO_VALIDATION_SEED, "" if demo else ": neither engine.gate.validation_folder nor "
        "engine.calibration.folder is set, so synthetic parts stand in for your images"),
        synthetic_seed=DEMO_VALIDATION_SEED, synthetic_count=gate.validation_images)


def calibration_set(config: AgentConfig) -> ImageSet:
    """The INT8 calibration images (never one the gate validates on); raises EngineError with the fix."""
    calibration = config.engine.calibration
    gate = config.engine.gate
    if calibration.folder is None:
        if config.model.path.resolve() != DEMO_MODEL.resolve():
            raise ImageSetError(
                "engine.calibration.folder is not set: INT8 needs 100-500 representative images of your parts. "
                "Collect them as calibration/README.md explains and set engine.calibration.folder (FP16 and "
                "FP32 need no calibration images).")
        return ImageSet("demo synthetic set (seed {})".format(DEMO_CALIBRATION_SEED),
                        synthetic_seed=DEMO_CALIBRATION_SEED, synthetic_count=calibration.min_images)
    files = list_images(calibration.folder, "engine.calibration")
    held = set() if gate.validation_folder is not None else set(_held_out(files, gate.validation_images))
    files = [f for f in files if f not in held]
    if len(files) < calibration.min_images:
        raise ImageSetError(
            "engine.calibration.folder {} has {} usable image(s) after holding out {} for validation; at "
            "least engine.calibration.min_images = {} are needed. Add images (100-500 representative "
            "parts, see calibration/README.md) or set engine.gate.validation_folder.".format(
                calibration.folder, len(files), len(held), calibration.min_images))
    return ImageSet(str(calibration.folder), files=tuple(_evenly(files, calibration.max_images)))


def _hold_out_step(files: List[Path], wanted: int) -> int:
    return max(2, len(files) // wanted) if len(files) >= 2 else 0


def _held_out(files: List[Path], wanted: int) -> List[Path]:
    """Every n-th image for the gate, so that the gate never sees an image calibration saw."""
    every = _hold_out_step(files, wanted)
    return files[every - 1::every][:wanted] if every else []


def write_demo_sets(folder: Path, calibration_count: int = 100, validation_count: int = 32) -> None:
    """The demo model's calibration and validation images as PNG files under folder/."""
    for name, seed, count in (("calibration", DEMO_CALIBRATION_SEED, calibration_count),
                              ("validation", DEMO_VALIDATION_SEED, validation_count)):
        target = folder / name
        target.mkdir(parents=True, exist_ok=True)
        for index, image in enumerate(ImageSet(name, synthetic_seed=seed, synthetic_count=count).frames()):
            if not cv2.imwrite(str(target / "{:05d}.png".format(index)), image):
                raise EngineError("cannot write {}".format(target / "{:05d}.png".format(index)))


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m edge_agent.engine.calibration",
        description="Write the bundled demo model's calibration and validation images (synthetic parts, "
                    "deterministic) as PNG files: FOLDER/calibration and FOLDER/validation.")
    parser.add_argument("folder", type=Path, help="where to write (e.g. calibration/demo)")
    parser.add_argument("--calibration", type=int, default=100, help="calibration images (100)")
    parser.add_argument("--validation", type=int, default=32, help="validation images (32)")
    args = parser.parse_args(argv)
    write_demo_sets(args.folder, args.calibration, args.validation)
    print("wrote {} calibration and {} validation images under {}".format(
        args.calibration, args.validation, args.folder))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
