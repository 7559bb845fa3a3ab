"""The rollout thread beside an in-process pipeline (local desired state, no broker): the pipeline's
sanity watch rolls a NaN-producing model back, memory is admitted beside the serving model, old
models are pruned, and the fps figures of the build are reported."""

import threading
import time

import cv2

from edge_agent.agent import running_pipeline
from edge_agent.config_loader import load_config
from edge_agent.engine.cache import file_sha256, write_json_atomic
from edge_agent.metrics import Registry
from edge_agent.rollout.session import rollout_session
from edge_agent.synthetic import SyntheticGenerator

from .rollout_models import nan_model
from .test_swap import Recorder
from onnx_models import dark_spot_model


def config_for(tmp_path, model, **sections):
    data = {
        "model": {"path": str(model), "input": {"width": 64, "height": 64},
                  "output": {"classes": ["background", "dark"]}},
        "sources": [{"type": "synthetic", "name": "cam0", "width": 96, "height": 72}],
        "paths": {"state_dir": str(tmp_path / "state"), "cache_dir": str(tmp_path / "cache")},
        "rollout": {"download": {"min_free_mb": 0}, "max_fps_drop": 1.0, "keep_models": 2},
    }
    data.update(sections)
    return load_config(None, data)


class Line:
    """An in-process pipeline with a rollout thread and every frame recorded."""

    def __init__(self, config):
        self.config = config
        self.recorder = Recorder()
        self.stop = threading.Event()

    def __enter__(self):
        self._pipeline = running_pipeline(self.config, Registry(), [self.recorder])
        self.pipeline = self._pipeline.__enter__()
        self.recorder.pipeline = self.pipeline
        self._rollout = rollout_session(self.config, self.config, self.pipeline)
        self.rollout = self._rollout.__enter__()
        self.thread = threading.Thread(target=self.pipeline.run, args=(self.stop,))
        self.thread.start()
        return self

    def deploy(self, model, rollout_id, states=("active", "rejected", "rolled-back"), timeout=120):
        store = self.rollout.store
        store.desired_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(store.desired_path, {"rollout_id": rollout_id, "url": str(model),
                                               "sha256": file_sha256(model), "size": model.stat().st_size})
        return self.wait(rollout_id, states, timeout)

    def wait(self, rollout_id, states, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            report = self.rollout.store.report
            if report and report["rollout_id"] == rollout_id and report["state"] in states:
                return report
            time.sleep(0.1)
        raise AssertionError("no {} report for {}: {}".format(states, rollout_id, self.rollout.store.report))

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(30)
        self._rollout.__exit__(None, None, None)
        self._pipeline.__exit__(None, None, None)


def test_a_model_producing_nan_on_the_line_is_rolled_back_automatically(tmp_path):
    old = dark_spot_model(tmp_path / "old.onnx")
    broken = nan_model(tmp_path / "nan.onnx")
    # no recent frames for the gate: only the line can reveal the NaN, and the watch must catch it
    config = config_for(tmp_path, old, rollout={"download": {"min_free_mb": 0}, "max_fps_drop": 1.0,
                                                "gate": {"recent_frames": 0}})
    with Line(config) as line:
        line.deploy(broken, "r-nan", states=("active", "rolled-back"))  # the watch may trip at once
        report = line.wait("r-nan", ("rolled-back",))
        time.sleep(0.3)
        reasons = line.pipeline.registry.health.snapshot().reasons
    # the pipeline's sanity watch on the new model found it; its warning left the health with the model
    assert report["reason"].startswith("automatic: sanity nan: ") and "NaN or Inf" in report["reason"]
    assert not [r for r in reasons if r.startswith("sanity")], reasons
    assert report["rolled_back_to"] == report["serving_sha256"] == file_sha256(old)
    seen = line.recorder.seen
    assert [i for _, i, _, _ in seen] == list(range(len(seen)))
    models = []
    for _, _, _, model in seen:
        if not models or models[-1] != model:
            models.append(model)
    assert models == ["old.onnx", file_sha256(broken) + ".onnx", "old.onnx"]


def test_the_candidate_must_fit_beside_the_serving_model(tmp_path):
    old = dark_spot_model(tmp_path / "old.onnx")
    new = dark_spot_model(tmp_path / "new.onnx", gain=25.0)
    config = config_for(tmp_path, old, memory={"limit_mb": 100, "margin_mb": 64})
    with Line(config) as line:
        report = line.deploy(new, "r-mem")
    assert report["state"] == "rejected" and "not enough memory to build and gate the candidate beside the serving" \
        " model" in report["reason"]
    assert report["memory"]["left_mb"] < 64 < report["memory"]["serving_mb"]
    assert report["serving_sha256"] == file_sha256(old)


def test_the_build_child_s_own_memory_is_admitted_before_it_starts(tmp_path):
    """Room for the candidate's buffers but not for a Python build child beside the line: refused
    with the child's terms, before any child runs (nothing is built, the old model serves)."""
    old = dark_spot_model(tmp_path / "old.onnx")
    new = dark_spot_model(tmp_path / "new.onnx", gain=25.0)
    config = config_for(tmp_path, old, memory={"limit_mb": 230, "margin_mb": 64})
    with Line(config) as line:
        report = line.deploy(new, "r-child")
        assert not line.rollout.store.data.get("build_peak_bytes")  # no child ran
    assert report["state"] == "rejected", report
    assert "to build and gate the candidate" in report["reason"], report["reason"]
    terms = report["memory"]["build_mb_terms"]
    assert terms["build child runtime (Python, ONNX Runtime, OpenCV)"] >= 100
    assert report["memory"]["left_mb"] > 100  # the candidate alone (a few MB and the margin) would fit
    assert report["serving_sha256"] == file_sha256(old)


def test_rollouts_keep_the_last_models_and_report_the_build_s_fps(tmp_path):
    old = dark_spot_model(tmp_path / "old.onnx")
    config = config_for(tmp_path, old, sources=[{"type": "synthetic", "name": "cam0", "width": 96, "height": 72,
                                                 "fps": 40}])
    config = config.model_copy(update={"rollout": config.rollout.model_copy(update={"max_fps_drop": 0.5})})
    shas = []
    with Line(config) as line:
        for n in range(3):
            model = dark_spot_model(tmp_path / "m{}.onnx".format(n), gain=21.0 + n)
            report = line.deploy(model, "r{}".format(n))
            assert report["state"] == "active", report
            shas.append(file_sha256(model))
        store = line.rollout.store
        kept = sorted(p.stem for p in store.models_dir.glob("*.onnx"))
    assert kept == sorted(shas[1:])  # keep_models 2: the serving one and the previous one
    assert [k["sha256"] for k in store.kept] == [shas[1]]
    # the build child's measured peak is reported and kept for the next admission
    assert 40 < report["memory"]["build_peak_mb"] < 2048
    assert store.data["build_peak_bytes"] >= report["memory"]["build_peak_mb"] * 2**20 * 0.99
    build = report["build"]
    assert set(build) >= {"fps_before", "fps_during_build", "max_fps_drop", "build_pauses"}
    # a build shorter than MIN_MEASURED_S (a fast machine, this tiny model) has no fps figure to give
    assert (build["fps_during_build"] is not None) == ("fps_drop" in build)
    assert 20 < build["fps_before"] < 60  # a paced 40 fps camera, measured


def test_a_config_patch_and_a_reduced_precision_go_through_the_fp32_reference_gate(tmp_path):
    old = dark_spot_model(tmp_path / "old.onnx")
    new = dark_spot_model(tmp_path / "new.onnx", gain=25.0)
    folder = tmp_path / "calibration"
    folder.mkdir()
    generator = SyntheticGenerator(seed=3)
    for index in range(16):
        cv2.imwrite(str(folder / "part-{:02d}.png".format(index)), generator.sample(index).image)
    config = config_for(tmp_path, old, engine={"calibration": {"folder": str(folder), "min_images": 10},
                                               "gate": {"iou_floor": 0.9, "validation_images": 4}})
    with Line(config) as line:
        store = line.rollout.store
        store.desired_path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(store.desired_path, {
            "rollout_id": "r-fp16", "url": str(new), "sha256": file_sha256(new), "size": new.stat().st_size,
            "config": {"precision": "fp16", "thresholds": {"score": 0.6, "min_area_px": 12}}})
        report = line.wait("r-fp16", ("active", "rejected"), timeout=300)
        served = line.pipeline.config
    assert report["state"] == "active", report
    reference = report["gate"]["reference"]
    assert reference["precision"] == "fp16" and reference["iou_agreement"] >= 0.9 and reference["passed"]
    assert report["precision"] == "fp16" and report["gate"]["precision_served"] == "fp16"
    assert served.backend.precision == "fp16" and served.model.thresholds.score == 0.6
    assert served.model.thresholds.min_area_px == 12
