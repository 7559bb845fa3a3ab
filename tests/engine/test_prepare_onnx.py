"""The whole preparation path on a CPU: variants, cache, gate and fallback with ONNX Runtime."""

import json
import os

import numpy as np
import onnx
import pytest
from engine_fixtures import engine_config_fixture, image_sets_fixture  # noqa: F401 -- fixtures

from edge_agent.agent import open_backend
from edge_agent.engine import prepare, prepare_model
from edge_agent.errors import EngineError, ModelError


def _zero_points(path):
    model = onnx.load(str(path))
    return [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if "zero_point" in i.name]


def test_int8_for_onnxruntime_is_u8s8_in_the_measured_format_gated_and_cached(engine_config):
    config = engine_config()
    first = prepare(config, precision="int8")
    assert first.cache == "built" and first.prepared.precision == "int8"
    manifest = json.loads(first.prepared.path.with_name(first.prepared.path.name + ".json").read_text())
    build = manifest["build"]
    assert build["int8_recipe"] == "onnxruntime-u8s8" and manifest["fields"]["recipe"] == "onnxruntime"
    timings = build["format_latency_ms"]
    # the test model's first layer is a convolution of the image: the variant keeping it in FP32 is timed too
    assert set(timings) == {"QDQ", "QDQ+float-input-conv", "QOperator"} and all(t > 0 for t in timings.values())
    assert build["variant"] == min(timings, key=timings.get)  # the fastest one serves
    graph = onnx.load(str(first.prepared.path)).graph
    ops = {n.op_type for n in graph.node}
    assert ("QLinearConv" in ops) == (build["quant_format"] == "QOperator")
    weights = {i.name for i in graph.initializer}
    assert [n.name for n in graph.node if n.op_type == "Conv" and n.input[1] in weights] == build["float_nodes"]
    assert build["float_nodes"] in ([], ["Conv_0"])  # the unnamed input conv, named for the quantizer
    dtypes = {z.dtype for z in _zero_points(first.prepared.path)}
    assert {np.dtype(np.uint8), np.dtype(np.int8)} <= dtypes  # unsigned activations, signed weights
    report = first.as_dict()
    assert report["gate"]["passed"] and 0.5 <= report["gate"]["iou_agreement"] <= 1.0
    assert manifest["gate"]["iou_agreement"] == report["gate"]["iou_agreement"]
    second = prepare(config, precision="int8")
    assert second.cache == "hit" and second.prepared.path == first.prepared.path


def test_int8_for_tensorrt_is_signed_symmetric_qdq(engine_config, tmp_path):
    from edge_agent.engine.onnx_variants import produce_int8

    config = engine_config()
    target = tmp_path / "trt-int8.onnx"
    details = produce_int8(lambda text, fraction: None, str(config.model.path), str(target),
                           config.model_dump(mode="json"), recipe="tensorrt")
    assert details["int8_recipe"] == "tensorrt-s8s8-symmetric"
    ops = {n.op_type for n in onnx.load(str(target)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops and "QLinearConv" not in ops
    zero_points = _zero_points(target)
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # symmetric


def test_fp16_variant_keeps_float32_io_and_serves(engine_config):
    config = engine_config()
    report = prepare(config, precision="fp16")
    model = onnx.load(str(report.prepared.path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    with open_backend(config.model_copy(update={"backend": config.backend.model_copy(
            update={"precision": "fp16"})})) as backend:
        assert backend.model.precision == "fp16" and backend.infer(1).shape[1] == 5


def test_a_failed_gate_falls_back_and_the_verdict_is_cached(engine_config):
    config = engine_config(gate={"iou_floor": 1.0, "max_probability_drift": 0.0})
    report = prepare(config, precision="int8")
    assert report.prepared.precision == "fp32" and report.prepared.path == config.model.path
    assert [f["precision"] for f in report.as_dict()["fallbacks"]] == ["int8", "fp16"]
    again = prepare(config, precision="int8")  # the stored verdicts: no rebuild, no new gate run
    assert [a["cache"] for a in again.attempts] == ["hit", "hit", "none"]


def test_progress_is_reported(engine_config):
    seen = []
    prepare(engine_config(), lambda text, fraction: seen.append((text, fraction)), precision="int8")
    assert any("calibration" in t for t, _ in seen) and any("gate" in t for t, _ in seen)


@pytest.mark.parametrize("damage", ["truncate", "empty", "corrupt"])
def test_a_damaged_cache_entry_is_moved_aside_and_rebuilt(engine_config, damage, caplog):
    config = engine_config()
    path = prepare(config, precision="fp16").prepared.path
    data = path.read_bytes()
    path.write_bytes({"truncate": data[:len(data) // 2], "empty": b"",
                      "corrupt": data[:-8] + b"\0" * 8}[damage])
    report = prepare(config, precision="fp16")
    assert report.cache == "built" and path.read_bytes() == data
    assert list((path.parent / "rejected").glob(path.name + ".*"))
    assert "moved to" in caplog.text


def test_unwritable_cache_is_a_clear_error(engine_config, tmp_path):
    if os.geteuid() == 0:
        blocker = tmp_path / "cache"
        blocker.write_text("a file where the cache folder should be")
    else:
        (tmp_path / "cache").mkdir()
        (tmp_path / "cache").chmod(0o500)
    with pytest.raises(EngineError, match="not writable.*paths.cache_dir"):
        prepare(engine_config(), precision="fp16")


def test_old_entries_are_pruned(engine_config, image_sets):
    config = engine_config(cache={"keep_last": 1})
    fp16 = prepare(config, precision="fp16").prepared.path
    int8 = prepare(config, precision="int8").prepared.path
    assert int8.exists() and not fp16.exists()


def test_prepare_model_serves_fp32_onnx_directly(engine_config):
    config = engine_config()
    prepared = prepare_model(config)
    assert prepared.path == config.model.path and prepared.precision == "fp32"


# ---- bad input: clear message, no change to the cache ---------------------------------------

def _cache_snapshot(config):
    root = config.paths.cache_dir
    return sorted((str(p), p.stat().st_size) for p in root.rglob("*")) if root.exists() else []


def test_truncated_onnx_is_a_model_error(engine_config):
    config = engine_config()
    prepare(config, precision="fp16")
    before = _cache_snapshot(config)
    data = config.model.path.read_bytes()
    config.model.path.write_bytes(data[:len(data) // 3])
    with pytest.raises(ModelError, match="truncated"):
        prepare(config, precision="fp16")
    assert _cache_snapshot(config) == before


def test_missing_onnx_is_a_model_error(engine_config):
    config = engine_config()
    config.model.path.unlink()
    with pytest.raises(ModelError, match="does not exist"):
        prepare(config, precision="int8")


def test_unsupported_operator_is_named(engine_config):
    config = engine_config()
    model = onnx.load(str(config.model.path))
    model.graph.node[1].op_type, model.graph.node[1].domain = "FancyActivation", "com.example"
    model.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    onnx.save(model, str(config.model.path))
    with pytest.raises(ModelError, match="FancyActivation.*com.example"):
        prepare(config, precision="int8")


def test_empty_calibration_folder(engine_config, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EngineError, match="holds no images"):
        prepare(engine_config(calibration={"folder": str(tmp_path / "empty")}), precision="int8")
    assert not (tmp_path / "cache" / "engines" / "tiny").exists()


def test_missing_calibration_folder(engine_config, tmp_path):
    with pytest.raises(EngineError, match="does not exist"):
        prepare(engine_config(calibration={"folder": str(tmp_path / "nope")}), precision="int8")


def test_unreadable_calibration_image(engine_config, tmp_path, image_sets):
    folder = tmp_path / "cal"
    folder.mkdir()
    for source in sorted((image_sets / "calibration").glob("*.png")):
        (folder / source.name).write_bytes(source.read_bytes())
    (folder / "zz-broken.png").write_bytes(b"not a png")
    with pytest.raises(EngineError, match="zz-broken.png: not a readable image"):
        prepare(engine_config(calibration={"folder": str(folder)}), precision="int8")


def test_too_few_calibration_images(engine_config):
    with pytest.raises(EngineError, match="min_images = 100"):
        prepare(engine_config(calibration={"min_images": 100, "max_images": 500}), precision="int8")


def test_non_demo_model_without_calibration_folder(engine_config):
    config = engine_config()
    config.engine.calibration.folder = None
    with pytest.raises(EngineError, match="engine.calibration.folder is not set"):
        prepare(config, precision="int8")


def test_validation_is_held_out_from_calibration(engine_config, image_sets):
    from edge_agent.engine.calibration import calibration_set, validation_set

    config = engine_config(gate={"validation_folder": None, "validation_images": 4}, calibration={"min_images": 10})
    calibration, validation = calibration_set(config), validation_set(config)
    assert validation.size == 4 and not set(calibration.files) & set(validation.files)
    assert np.all([p.exists() for p in calibration.files])


def test_fp16_needs_no_calibration_images_and_the_gate_says_what_it_validated_on(engine_config):
    config = engine_config(calibration={"folder": None}, gate={"validation_folder": None, "validation_images": 4})
    report = prepare(config, precision="fp16").as_dict()
    assert report["precision_served"] == "fp16" and report["gate"]["passed"]
    assert "synthetic parts stand in for your images" in report["gate"]["validation_set"]
    with pytest.raises(EngineError, match="FP16 and FP32 need no calibration images"):
        prepare(config, precision="int8")


def test_the_gate_validates_on_the_calibration_folder_when_no_validation_folder_is_set(engine_config, image_sets):
    config = engine_config(gate={"validation_folder": None, "validation_images": 4}, calibration={"min_images": 10})
    gate = prepare(config, precision="fp16").as_dict()["gate"]
    assert gate["images"] == 4 and "held out from calibration" in gate["validation_set"]
    assert str(image_sets / "calibration") in gate["validation_set"]


def _pixel_shuffle_model(path):
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    # the demo model's shape: a head convolution, then the shuffle to full resolution as the output
    inits = [numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "w1")]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1], name="head"),
             helper.make_node("DepthToSpace", ["c1"], ["out"], blocksize=2, mode="CRD", name="shuffle")]
    graph = helper.make_graph(nodes, "shuffle",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 2, 16, 16])],
                              initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_pixel_shuffles_stay_int8_in_the_cpu_recipe(tmp_path):
    """DepthToSpace only moves bytes: quantized, it reads and writes uint8 between Q/DQ pairs
    instead of 4x the float bytes; ORT's own registry is left as it was."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static, registry

    from edge_agent.engine.ort_int8 import pixel_shuffles_in_int8

    source = _pixel_shuffle_model(tmp_path / "shuffle.onnx")

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"image": np.random.default_rng(i).random((1, 3, 8, 8), np.float32)}
                                 for i in range(4)])

        def get_next(self):
            return next(self.batches, None)

    def shuffle_neighbours(target, context):
        with context:
            quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        graph = onnx.load(str(target)).graph
        producer = {o: n.op_type for n in graph.node for o in n.output}
        shuffle = next(n for n in graph.node if n.op_type == "DepthToSpace")
        consumers = [n.op_type for n in graph.node if shuffle.output[0] in n.input]
        return producer[shuffle.input[0]], consumers

    import contextlib

    # by itself ORT dequantizes the head's output and shuffles floats
    assert shuffle_neighbours(tmp_path / "plain.onnx", contextlib.nullcontext()) == ("DequantizeLinear", [])
    assert shuffle_neighbours(tmp_path / "int8.onnx", pixel_shuffles_in_int8()) == \
        ("DequantizeLinear", ["QuantizeLinear"])
    assert "DepthToSpace" not in registry.QDQRegistry and "DepthToSpace" not in registry.QLinearOpsRegistry
