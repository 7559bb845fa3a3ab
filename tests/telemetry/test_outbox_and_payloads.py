"""Outbox bound and priorities, payload flattening, and the system probe's sensor mapping."""

import json

import numpy as np
import pytest

from edge_agent.errors import EdgeAgentError
from edge_agent.metrics import Registry
from edge_agent.telemetry.config import CropConfig
from edge_agent.telemetry.crops import copy_crop, encode_crop
from edge_agent.telemetry.outbox import KIND_EVENT, KIND_METRICS, NewMessage, Outbox
from edge_agent.telemetry.payloads import with_replay
from edge_agent.telemetry.probe import TegraSysfsProvider, jtop_values
from edge_agent.telemetry.window import MetricsWindow


def _message(kind, seq, size=100):
    """Every message the same size, so the bound's arithmetic is exact."""
    return NewMessage(kind, "t/" + kind, json.dumps({"seq": seq, "pad": "x" * (size - len(str(seq)))}).encode())


def test_outbox_persists_until_deleted(tmp_path):
    outbox = Outbox(tmp_path / "o.sqlite", 10**6).open()
    outbox.add([_message(KIND_METRICS, 1), _message(KIND_EVENT, 1)], "s1", offline=True)
    first = outbox.pending(10)
    assert [r.kind for r in first] == [KIND_METRICS, KIND_EVENT] and all(r.queued_offline for r in first)
    assert outbox.pending(10, exclude=[first[0].id]) == first[1:]
    outbox.delete([first[0].id])
    outbox.close()
    reopened = Outbox(tmp_path / "o.sqlite", 10**6).open()
    (row,) = reopened.pending(10)
    assert row.kind == KIND_EVENT and row.session == "s1"
    assert reopened.rows == 1 and reopened.size_bytes == len(row.payload)


def test_outbox_drops_oldest_metrics_first_then_events(tmp_path):
    size = len(_message(KIND_EVENT, 0).payload)
    outbox = Outbox(tmp_path / "o.sqlite", max_bytes=10 * size).open()
    outbox.add([_message(KIND_METRICS, i) for i in range(4)], "s", offline=True)
    outbox.add([_message(KIND_EVENT, i) for i in range(6)], "s", offline=True)
    assert outbox.dropped_metrics == 0 and outbox.rows == 10
    outbox.add([_message(KIND_EVENT, 6), _message(KIND_EVENT, 7)], "s", offline=True)
    assert (outbox.dropped_metrics, outbox.dropped_events) == (2, 0)
    kept = [(r.kind, json.loads(r.payload)["seq"]) for r in outbox.pending(100)]
    assert kept[:2] == [(KIND_METRICS, 2), (KIND_METRICS, 3)]  # the oldest metrics went first
    outbox.add([_message(KIND_EVENT, i) for i in range(8, 13)], "s", offline=True)
    assert outbox.dropped_metrics == 4 and outbox.dropped_events == 3
    assert outbox.size_bytes <= outbox.max_bytes
    assert [json.loads(r.payload)["seq"] for r in outbox.pending(100)] == list(range(3, 13))


def test_outbox_on_an_unwritable_path_says_what_to_fix(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(EdgeAgentError, match="state_dir"):
        Outbox(tmp_path / "file" / "o.sqlite", 1000).open()


def test_replay_flag_is_spliced_into_the_stored_json():
    assert json.loads(with_replay(b'{"a":1}', True)) == {"a": 1, "replay": True}
    assert json.loads(with_replay(b'{"a":1}', False)) == {"a": 1, "replay": False}


def test_metrics_carry_labels_as_structure_with_units_and_no_sentinels():
    registry = Registry()
    registry.counter("frames_dropped", source="cam0", reason="overwritten").inc(3)
    registry.counter("frames_processed", source="cam_a_left").inc(10)  # "_" in a name survives
    registry.counter("frames_processed", source="cam1").inc(5)
    registry.histogram("stage_ms", stage="infer").observe(4.0)
    registry.histogram("stage_ms", stage="publish")  # no samples yet
    registry.gauge("backend_host", "mb").set(12.5)
    registry.gauge("never_set", "mb")
    window = MetricsWindow(registry)
    values, catalogue = window.collect({}, {})
    assert values["by_source_reason"] == [{"source": "cam0", "reason": "overwritten", "frames_dropped_total": 3}]
    assert values["frames_dropped_total"] == 3
    sources = {row["source"]: row for row in values["by_source"]}
    assert values["frames_processed_total"] == 15 and sources["cam_a_left"]["frames_processed_total"] == 10
    stages = {row["stage"]: row for row in values["by_stage"]}
    assert stages["infer"]["stage_p99_ms"] == 4.0 and stages["infer"]["stage_count"] == 1
    assert "stage_p99_ms" not in stages["publish"] and stages["publish"]["stage_count"] == 0
    assert catalogue["by_stage[].stage_p99_ms"].unit == "ms"  # announced even before its first sample
    assert catalogue["backend_host_mb"].unit == "MB"  # one spelling of each unit
    assert values["backend_host_mb"] == 12.5 and "never_set_mb" not in values
    assert values["frames_ng_total"] == 0 and values["defects_total"] == 0  # totals from the first window
    for key, value in values.items():  # numbers at the top level, arrays of labelled objects
        assert isinstance(value, (int, float)) or (key.startswith("by_") and all(isinstance(r, dict) for r in value))
    again, _ = window.collect({}, {})
    assert "stage_p99_ms" not in {k for row in again["by_stage"] for k in row}  # each window: its own samples


def test_jtop_values_drop_off_strings_and_sentinels():
    stats = {"GPU": 37.5, "EMC": 12, "Temp GPU": -256, "Temp CPU": 48.25, "Power TOT": 5120,
             "Power VDD_CPU_GPU_CV": 1800, "fan": "OFF", "nvp model": "MAXN", "jetson_clocks": False}
    assert jtop_values(stats) == {"gpu_util_pct": 37.5, "emc_util_pct": 12.0, "temp_cpu_c": 48.2,
                                  "power_total_mw": 5120.0, "power_vdd_cpu_gpu_cv_mw": 1800.0}


def test_tegra_sysfs_reader_on_a_fake_tree(tmp_path):
    sys_root, var_root = tmp_path / "sys", tmp_path / "var"
    gpu = sys_root / "devices/platform/17000000.ga10b"
    (gpu / "devfreq/17000000.ga10b").mkdir(parents=True)
    (gpu / "load").write_text("523\n")
    (gpu / "devfreq/17000000.ga10b/cur_freq").write_text("918000000\n")
    for index, (name, milli) in enumerate([("gpu-thermal", "41500"), ("cv0-thermal", "-256000")]):
        zone = sys_root / "class/thermal/thermal_zone{}".format(index)
        zone.mkdir(parents=True)
        (zone / "type").write_text(name)
        (zone / "temp").write_text(milli)
    hwmon = sys_root / "bus/i2c/drivers/ina3221/1-0040/hwmon/hwmon3"
    hwmon.mkdir(parents=True)
    for channel, label, mv, ma in [(1, "VDD_IN", 5000, 1200), (2, "VDD_CPU_GPU_CV", 5000, 300)]:
        (hwmon / "in{}_label".format(channel)).write_text(label)
        (hwmon / "in{}_input".format(channel)).write_text(str(mv))
        (hwmon / "curr{}_input".format(channel)).write_text(str(ma))
    (var_root / "lib/nvpmodel").mkdir(parents=True)
    (var_root / "lib/nvpmodel/status").write_text("pmode:0002\n")
    provider = TegraSysfsProvider(sys_root, var_root, proc_root=tmp_path / "proc")  # no GPU memory readable
    assert provider.read() == {"gpu_util_pct": 52.3, "gpu_freq_mhz": 918.0, "temp_gpu_c": 41.5,
                               "power_vdd_in_mw": 6000.0, "power_vdd_cpu_gpu_cv_mw": 1500.0,
                               "power_total_mw": 6000.0}
    facts = provider.facts()
    assert facts["nvpmodel"] == "0002" and facts["gpu_memory"].startswith("unified with RAM, from not readable here")


def test_crop_is_bounded_on_copy_and_encode():
    image = np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8)
    config = CropConfig(enabled=True, max_side_px=64, max_bytes=4096)
    crop, origin = copy_crop(image, (100, 200, 1200, 600), config)
    assert origin == (92, 192) and max(crop.shape[:2]) <= 2 * 64  # subsampled while copying
    fields = encode_crop(crop, origin, config)
    assert ("crop_jpeg_b64" in fields and fields["crop_width_px"] <= 64) or fields == {"crop_omitted": "too_large"}
