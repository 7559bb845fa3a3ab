"""Trial inference: the configured model run on a few sample images before the line starts, to catch
the pixel-level mistakes that the model's structure cannot show (edge_agent.modelcheck looks at the
graph; this looks at what comes out of it).

Samples, first that applies (the finding says which): the first frames of the configured folder and
video sources; the gate's validation / calibration images (edge_agent.engine.calibration's
`validation_set`); the synthetic generator's frames (the configured synthetic source's, else the
demo camera's defaults). Each sample goes through the pipeline's own Preprocessor, the backend and
the pipeline's own Postprocessor, and is judged with the sanity watch's tests and thresholds
(edge_agent.sanity). Fails, the first that holds (later ones follow from earlier ones):

- NaN or Inf in the output on any sample;
- scores outside [0, 1] after the configured activation (`activation: none` on logits);
- defects covering `sanity.coverage` or more of the frame on most samples (scale/mean/std wrong,
  e.g. `scale: 1.0` instead of 1/255). On synthetic stand-in images for a model other than the
  demo model this is a warning (such a model has never seen those images), and with
  `sanity.enabled: false` too (the way out for a model whose defects do cover most of a frame).

With none of these, no defect on any sample is a warning (normalization or thresholds, or defect-free
samples). `edge-agent check` runs the ONNX model with ONNX Runtime (`check_findings`); `run`, `demo`
and `inspect` run it on the opened backend before the first frame (`verify_outputs`), and a reload's
dry run does the same, so a finding reads the same everywhere.
"""

import logging
import math
import time
from typing import Any, List, NamedTuple, Optional, Tuple

import numpy as np

from edge_agent.config import DEMO_MODEL, AgentConfig
from edge_agent.errors import EdgeAgentError, ModelError
from edge_agent.modelcheck import Finding, format_values
from edge_agent.postprocess import Postprocessor
from edge_agent.preprocess import Preprocessor
from edge_agent.sanity import covers_frame, finite, output_range, outside_unit, reads_probabilities

log = logging.getLogger(__name__)

SAMPLES = 6  # enough to see "most samples", few enough for a quick check (about 0.1 s on the demo model)


class Samples(NamedTuple):
    images: List[np.ndarray]  # BGR uint8
    description: str  # where they came from, for the finding
    synthetic: bool  # generated stand-ins, not the line's own images


def sample_images(config: AgentConfig, count: int = SAMPLES) -> Samples:
    """Up to `count` images to try the model on, and where they came from."""
    images, names = _source_frames(config, count)
    if images:
        return Samples(images, "first frames of source(s) {}".format(", ".join(names)), False)
    engine = config.engine
    if engine.gate.validation_folder is not None or engine.calibration.folder is not None:
        from edge_agent.engine.calibration import validation_set

        try:
            image_set = validation_set(config)
            for image in image_set.frames():
                images.append(image)
                if len(images) == count:
                    break
        except EdgeAgentError as exc:  # a missing or unreadable folder: the io checks name it
            log.debug("trial: no sample images from the calibration/validation folder: %s", exc)
            images = []
        if images:
            return Samples(images, "images of {}".format(image_set.description), False)
    return _synthetic(config, count)


def check_findings(config: AgentConfig, samples: Optional[Samples] = None) -> List[Finding]:
    """The trial with ONNX Runtime on the configured ONNX file (FP32), for `edge-agent check`."""
    from edge_agent.backends import create_backend
    from edge_agent.backends.base import PreparedModel
    from edge_agent.backends.onnxruntime import OnnxRuntimeConfig

    threads = config.backend.threads if config.backend.type == "onnxruntime" else 0
    trial_config = config.model_copy(update={
        "backend": OnnxRuntimeConfig(precision="fp32", threads=threads),
        "pipeline": config.pipeline.model_copy(update={"max_batch": 1})})
    path = config.model.path
    try:
        backend = create_backend(PreparedModel(path, "fp32", path), trial_config).open()
    except Exception as exc:  # an op ONNX Runtime lacks (a TensorRT plugin): the trial cannot run here
        return [Finding("model.path", "warn", "trial inference skipped: ONNX Runtime cannot run {} ({})".format(
            path.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))]
    try:
        return run_trial(config, backend, samples)
    finally:
        backend.close()


def verify_outputs(config: AgentConfig, backend: Any) -> None:
    """The trial on an opened backend, at start: ModelError with the failing line; warnings logged."""
    try:
        samples = sample_images(config)
    except Exception as exc:  # a source that breaks on reading: the pipeline reports it; start without the trial
        log.warning("trial inference skipped: no sample images (%s: %s)", type(exc).__name__, exc)
        return
    findings = run_trial(config, backend, samples)
    for finding in findings:
        if finding.status == "fail":
            raise ModelError(finding.line())
        log.log(logging.WARNING if finding.status == "warn" else logging.INFO, "%s", finding.line())


def run_trial(config: AgentConfig, backend: Any, samples: Optional[Samples] = None) -> List[Finding]:
    """Every sample through preprocess, `backend.infer(1)` and postprocess; the findings (an info
    line when all is well). `backend` is open; only its first input row is used."""
    started = time.monotonic()
    samples = samples if samples is not None else sample_images(config)
    model = config.model
    preprocess = Preprocessor(model.input, backend.input_buffer.dtype)
    postprocess = Postprocessor(model, backend.output_spec.shape[1:])
    floats = model.output.kind == "scores"
    nonfinite = covered = with_defects = 0
    low, high, largest = math.inf, -math.inf, 0.0
    with backend.bind_thread():
        for image in samples.images:
            geometry = preprocess(image, backend.input_buffer[0])
            output = backend.infer(1)[0]
            area = image.shape[0] * image.shape[1]
            if floats:
                row_low, row_high = output_range(output)
                if not finite(row_low, row_high):
                    nonfinite += 1
                    continue
                low, high = min(low, row_low), max(high, row_high)
            regions = postprocess(output, geometry)
            with_defects += bool(regions)
            covered += covers_frame(regions, area, config.sanity.coverage)
            largest = max(largest, sum(r.area_px for r in regions) / area)
    count = len(samples.images)
    where = "{} sample image(s): {}".format(count, samples.description)
    scale, mean, std = model.input.normalization(preprocess.raw_pixels)
    normalization = "scale {:g}, mean {}, std {}".format(scale, format_values(mean), format_values(std))
    if nonfinite:
        return [Finding("model.path", "fail", "{}: the output holds NaN or Inf on {} of {}".format(
            model.path.name, nonfinite, where), "re-export the model in FP32 and check its output on these images "
            "in the training code; check model.input scale/mean/std (now {})".format(normalization))]
    if floats and reads_probabilities(model) and outside_unit(low, high):
        return [Finding("model.output.activation", "fail", "none, but the scores range {:.3g}..{:.3g} on the {}: "
                        "outside 0-1, the output holds logits".format(low, high, where),
                        "set model.output.activation: {}".format(
                            "softmax" if len(model.output.classes) > 1 else "sigmoid"))]
    if covered * 2 > count:
        stand_in = samples.synthetic and model.path.resolve() != DEMO_MODEL.resolve()
        warn_only = stand_in or not config.sanity.enabled
        return [Finding("model.input.scale", "warn" if warn_only else "fail", "{:g} (mean {}, std {}): defects cover "
                        "{:.0%} or more of the frame on {} of {}{}".format(
                            scale, format_values(mean), format_values(std), config.sanity.coverage, covered, where,
                            " (synthetic stand-ins: set engine.calibration.folder to judge on your own images)"
                            if stand_in else " (a warning only: sanity.enabled is false)" if warn_only else ""),
                        "set model.input scale, mean and std to the normalization the model was trained with "
                        "(pixels 0-1: leave scale out, it defaults to 1/255; scale 1 feeds 0-255)")]
    if not with_defects:
        return [Finding("model.input", "warn", "no defect found on any of the {} ({}; thresholds.score {:g}): if "
                        "they show defects, check model.input scale/mean/std against the model's training, then "
                        "model.thresholds".format(where, normalization, model.thresholds.score),
                        "set model.input scale, mean and std to the model's training normalization")]
    return [Finding("model", "info", "trial inference on {}: outputs finite{}, defects on {} of {}, the largest "
                    "covering {:.0%} of a frame ({:.2f} s)".format(
                        where, ", scores {:.3g}..{:.3g}".format(low, high) if reads_probabilities(model) else "",
                        with_defects, count, largest, time.monotonic() - started))]


def _source_frames(config: AgentConfig, count: int) -> Tuple[List[np.ndarray], List[str]]:
    from edge_agent.sources.config import FolderSourceConfig, VideoSourceConfig
    from edge_agent.sources.readers import EndOfStream, SourceError, UndecodableFrame, open_reader

    files = [s for s in config.sources if isinstance(s, (FolderSourceConfig, VideoSourceConfig))]
    images: List[np.ndarray] = []
    names: List[str] = []
    for index, source in enumerate(files):
        wanted = -(-(count - len(images)) // (len(files) - index))  # the rest, shared by the sources left
        reader = open_reader(source)
        taken = 0
        try:
            reader.open()
            while taken < wanted:
                try:
                    image, _ = reader.read()
                except UndecodableFrame:
                    continue
                images.append(image)
                taken += 1
        except (SourceError, EndOfStream):  # missing or short: the io checks report a missing source
            pass
        finally:
            reader.close()
        if taken:
            names.append("{} ({} {})".format(source.name, source.type, source.path))
    return images, names


def _synthetic(config: AgentConfig, count: int) -> Samples:
    from edge_agent.sources.config import SyntheticSourceConfig
    from edge_agent.sources.readers import open_reader

    configured = [s for s in config.sources if isinstance(s, SyntheticSourceConfig)]
    source = configured[0] if configured else SyntheticSourceConfig()
    reader = open_reader(source)
    images = [reader.read()[0] for _ in range(count)]
    what = "source {}".format(source.name) if configured else "the demo camera's defaults"
    return Samples(images, "synthetic frames ({}, seed {})".format(what, source.seed), True)
