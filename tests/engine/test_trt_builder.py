"""TensorRT builder behaviour on fakes generated from each version's real surface (no GPU here)."""

import sys

import pytest
from trt_fakes import _Builder, _OnnxParser, make_fake

from edge_agent.engine import trt_builder
from edge_agent.engine.trt_surface import SUPPORTED_VERSIONS
from edge_agent.errors import EngineError

PROFILE = {"image": [[1, 3, 32, 32], [1, 3, 32, 32], [4, 3, 32, 32]]}


@pytest.fixture(params=SUPPORTED_VERSIONS)
def fake_trt(request, monkeypatch):
    module = make_fake(request.param)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(_OnnxParser, "fail_at_node", None)
    monkeypatch.setattr(_Builder, "dla_cores", 0)
    return module


def _build(module, tmp_path, precision="fp16", strongly_typed=False, dla_core=None, table=None, seen=None):
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"onnx")
    caps = trt_builder.probe(module.__name__)
    return caps, trt_builder.build_plan(
        lambda text, fraction: (seen if seen is not None else []).append((text, fraction)),
        module=module.__name__, onnx_path=str(onnx_path), output=str(tmp_path / "plan"), precision=precision,
        strongly_typed=strongly_typed, workspace_bytes=1 << 30, optimization_level=4, profile=PROFILE,
        dla_core=dla_core, timing_cache=str(tmp_path / "timing.cache"), calibration_table=table,
        node_names=["conv_0", "odd_1"], node_ops=["Conv", "OddOp"])


def test_precision_by_flags_where_they_exist_else_strongly_typed(fake_trt, tmp_path):
    caps = trt_builder.probe(fake_trt.__name__)
    strongly_typed = not caps["precision_flags"]
    assert strongly_typed == fake_trt.__version__.startswith("11.")  # the real 11.x has no FP16 flag
    _, result = _build(fake_trt, tmp_path, "fp16", strongly_typed)
    network, config = _Builder.last
    flags = fake_trt.NetworkDefinitionCreationFlag
    if hasattr(flags, "EXPLICIT_BATCH"):
        assert network.flags & (1 << flags.EXPLICIT_BATCH)
    if strongly_typed:
        assert network.flags & (1 << flags.STRONGLY_TYPED) and config.flags == set()
    else:
        assert config.flags == {fake_trt.BuilderFlag.FP16}
    assert config.pools[fake_trt.MemoryPoolType.WORKSPACE] == 1 << 30
    if hasattr(fake_trt.IBuilderConfig, "builder_optimization_level"):  # 8.6+
        assert config.builder_optimization_level == 4
    assert config.profiles[0].shapes["image"] == tuple(tuple(s) for s in PROFILE["image"])
    assert (tmp_path / "plan").read_bytes().startswith(b"PLAN") and result["device_memory_bytes"] == 1 << 20
    assert (tmp_path / "timing.cache").read_bytes() == b"+timing"


def test_progress_monitor_where_available(fake_trt, tmp_path):
    seen = []
    _build(fake_trt, tmp_path, "fp32", seen=seen)
    has_monitor = hasattr(fake_trt, "IProgressMonitor")
    assert has_monitor == (not fake_trt.__version__.startswith("8."))
    assert any(fraction == 1.0 for _, fraction in seen) == has_monitor


def test_int8_flags_on_weakly_typed_versions(fake_trt, tmp_path):
    caps = trt_builder.probe(fake_trt.__name__)
    _build(fake_trt, tmp_path, "int8", not caps["int8_flag"])
    config = _Builder.last[1]
    if caps["int8_flag"]:
        assert config.flags == {fake_trt.BuilderFlag.FP16, fake_trt.BuilderFlag.INT8}
    else:
        assert config.flags == set()


def test_calibration_table_needs_the_implicit_calibrator(fake_trt, tmp_path):
    table = tmp_path / "calib.table"
    table.write_bytes(b"TRT-table")
    if trt_builder.probe(fake_trt.__name__)["implicit_calibrator"]:
        _build(fake_trt, tmp_path, "int8", table=str(table))
        assert _Builder.last[1].int8_calibrator.read_calibration_cache() == b"TRT-table"
    else:
        with pytest.raises(EngineError, match="IInt8EntropyCalibrator2.*TensorRT 11"):
            _build(fake_trt, tmp_path, "int8", table=str(table))


def test_dla_with_gpu_fallback_only_when_the_device_has_dla(fake_trt, tmp_path, monkeypatch):
    strongly_typed = not trt_builder.probe(fake_trt.__name__)["precision_flags"]
    _build(fake_trt, tmp_path, "fp16", strongly_typed, dla_core=0)
    assert _Builder.last[1].default_device_type is None
    monkeypatch.setattr(_Builder, "dla_cores", 2)
    _, result = _build(fake_trt, tmp_path, "fp16", strongly_typed, dla_core=1)
    config = _Builder.last[1]
    assert config.default_device_type == fake_trt.DeviceType.DLA and config.DLA_core == 1
    assert fake_trt.BuilderFlag.GPU_FALLBACK in config.flags and result["dla_core"] == 1
    assert result["dla_gpu_fallback_layers"] == 1  # the fake DLA cannot run the Resize layer


def test_parse_error_names_node_and_operator(fake_trt, tmp_path, monkeypatch):
    monkeypatch.setattr(_OnnxParser, "fail_at_node", 1)
    with pytest.raises(EngineError) as error:
        _build(fake_trt, tmp_path)
    text = str(error.value)
    if hasattr(fake_trt.ParserError, "node_name"):
        assert "fake-node-name" in text and "FakeOp" in text
    else:  # 8.6: the node index is mapped to the ONNX graph
        assert "'odd_1' (operator OddOp)" in text
    assert not (tmp_path / "plan").exists()


def test_a_fake_cannot_offer_what_tensorrt_lacks():
    fake = make_fake("11.4.0.106")
    assert not hasattr(fake.BuilderFlag, "FP16") and not hasattr(fake, "IInt8EntropyCalibrator2")
    assert not hasattr(fake.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH")
    assert not hasattr(make_fake("8.6.1"), "IProgressMonitor")


def test_jetpack5_tensorrt_852_builds_without_the_86_optimization_level(tmp_path, monkeypatch, caplog):
    """8.5.2 has no IBuilderConfig.builder_optimization_level: assigning it is an AttributeError
    (as on a real JetPack 5 board), so the builder must probe for it and say it is ignored."""
    module = make_fake("8.5.2")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(_OnnxParser, "fail_at_node", None)
    with pytest.raises(AttributeError, match="builder_optimization_level"):
        module.IBuilderConfig().builder_optimization_level = 4
    _, result = _build(module, tmp_path, "fp16")
    assert _Builder.last[1].flags == {module.BuilderFlag.FP16} and result["plan_bytes"] > 0
    assert "optimization_level 4 ignored" in caplog.text


def test_timing_cache_from_other_hardware_is_refused_logged_and_replaced(fake_trt, tmp_path, caplog):
    strongly_typed = not trt_builder.probe(fake_trt.__name__)["precision_flags"]
    (tmp_path / "timing.cache").write_bytes(b"OTHER-GPU timings")
    _build(fake_trt, tmp_path, "fp16", strongly_typed)
    config = _Builder.last[1]
    assert config.ignore_mismatch is False  # never accept a cache made on other hardware
    assert "was refused by TensorRT" in caplog.text
    assert (tmp_path / "timing.cache").read_bytes() == b"+timing"  # a fresh cache replaced the foreign one


def test_timing_cache_file_is_keyed_by_version_and_gpu():
    from edge_agent.engine.trt_target import timing_cache_name

    orin = timing_cache_name("8.5.2.2", "NVIDIA Jetson AGX Orin Developer Kit")
    assert orin.startswith("timing-8.5.2.2-NVIDIA-Jetson-AGX-Orin") and orin.endswith(".cache")
    assert orin != timing_cache_name("8.5.2.2", "NVIDIA Jetson Xavier NX Developer Kit")
    assert orin != timing_cache_name("8.6.2", "NVIDIA Jetson AGX Orin Developer Kit")


def test_the_build_reports_peak_memory_and_probing_needs_no_builder(fake_trt, tmp_path, monkeypatch):
    _, result = _build(fake_trt, tmp_path, "fp32")
    assert result["peak_rss_bytes"] > 10 * 2**20
    monkeypatch.setattr(fake_trt, "Builder", None)  # a daemon start (cache hit) must not create one
    assert trt_builder.probe(fake_trt.__name__)["dla_cores"] == 0
