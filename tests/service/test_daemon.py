"""`edge-agent run` as systemd runs it: a subprocess with $NOTIFY_SOCKET and $WATCHDOG_USEC."""

import os
import shutil
import signal
import time

import yaml

from service.service_helpers import config_data, write_yaml


def test_ready_watchdog_cadence_and_clean_sigterm(short_tmp, model_path, notify, start_daemon):
    config = write_yaml(short_tmp / "config.yaml", config_data(model_path))
    daemon = start_daemon(config, watchdog_usec=1_000_000)
    (ready_at, ready), = notify.wait_for("READY", "1", timeout=30)
    assert ready["STATUS"].startswith("running: 1 source(s), onnxruntime fp32")
    assert "MAINPID" in ready
    # nothing before READY claimed to be running, and no watchdog ping preceded local setup
    time.sleep(3.0)
    now = time.monotonic()
    pings = notify.pings_between(now - 2.5, now)
    # WATCHDOG_USEC=1 s: a ping every 0.5 s, so ~5 in 2.5 s
    assert 4 <= len(pings) <= 7, pings
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.9, gaps
    assert any(s.startswith("running ") and "fps" in s for s in notify.statuses()), notify.statuses()

    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log
    assert notify.having("STOPPING", "1")
    assert "frame loop stopped after" in daemon.log
    assert "Traceback" not in daemon.log


def test_engine_build_extends_the_start_timeout_before_ready(short_tmp, model_path, notify, start_daemon):
    config = write_yaml(short_tmp / "config.yaml", config_data(model_path))
    daemon = start_daemon(config, harness=True, env={"EA_TEST_SLOW_BUILD": "4"})
    (ready_at, _), = notify.wait_for("READY", "1", timeout=30)
    extends = notify.having("EXTEND_TIMEOUT_USEC")
    assert [m["STATUS"] for _, m in extends] == ["building engine 0 %", "building engine 25 %",
                                                 "building engine 50 %", "building engine 75 %"]
    assert all(int(m["EXTEND_TIMEOUT_USEC"]) >= 60_000_000 for _, m in extends)
    assert all(t < ready_at for t, _ in extends)
    # progress reports are progress: the watchdog is fed during the build too
    assert notify.pings_between(extends[0][0], ready_at)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log


def test_sighup_applies_a_valid_config(short_tmp, model_path, notify, start_daemon):
    path = short_tmp / "config.yaml"
    write_yaml(path, config_data(model_path))
    daemon = start_daemon(path)
    notify.wait_for("READY", "1", timeout=30)
    two_sources = [{"type": "synthetic", "name": "cam0", "width": 96, "height": 64, "fps": 50},
                   {"type": "synthetic", "name": "cam1", "width": 64, "height": 64, "fps": 50, "seed": 7}]
    write_yaml(path, config_data(model_path, sources=two_sources))
    daemon.signal(signal.SIGHUP)
    notify.wait_for("RELOADING", "1", timeout=15)
    readies = notify.wait_for("READY", "1", timeout=30, count=2)
    assert readies[1][1]["STATUS"].startswith("running: 2 source(s)")
    daemon.wait_for_log("applying the new config")
    assert daemon.process.poll() is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log


def test_sighup_that_leaves_the_model_alone_keeps_it_loaded(short_tmp, model_path, notify, start_daemon):
    model = short_tmp / "model.onnx"
    shutil.copy(str(model_path), str(model))
    path = short_tmp / "config.yaml"
    data = config_data(model)
    write_yaml(path, data)
    daemon = start_daemon(path)
    notify.wait_for("READY", "1", timeout=30)
    assert daemon.log.count("memory plan admitted") == 1
    # thresholds and sources changed: the pipeline restarts on the model already loaded
    data["model"]["thresholds"] = {"min_area_px": 7}
    data["sources"] = [{"type": "synthetic", "name": "cam0", "width": 96, "height": 64, "fps": 50},
                       {"type": "synthetic", "name": "cam1", "width": 64, "height": 64, "fps": 50, "seed": 7}]
    write_yaml(path, data)
    daemon.signal(signal.SIGHUP)
    readies = notify.wait_for("READY", "1", timeout=30, count=2)
    assert readies[1][1]["STATUS"].startswith("running: 2 source(s)")
    daemon.wait_for_log("the new pipeline keeps the loaded model")
    assert daemon.log.count("memory plan admitted") == 1  # not loaded again
    # a new file at the same path is a new model: tried out and loaded
    shutil.copy(str(model_path), str(short_tmp / "model.new"))
    os.replace(str(short_tmp / "model.new"), str(model))
    data["model"]["thresholds"] = {"min_area_px": 8}
    write_yaml(path, data)
    daemon.signal(signal.SIGHUP)
    notify.wait_for("READY", "1", timeout=30, count=3)
    daemon.wait_for_log("trying out the new config")
    assert daemon.log.count("memory plan admitted") == 2
    assert daemon.log.count("the new pipeline keeps the loaded model") == 1
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log
    assert "Traceback" not in daemon.log


def test_sighup_with_an_invalid_config_keeps_the_old_one(short_tmp, model_path, notify, start_daemon):
    path = short_tmp / "config.yaml"
    good = config_data(model_path)
    write_yaml(path, good)
    daemon = start_daemon(path)
    notify.wait_for("READY", "1", timeout=30)
    bad = dict(good, pipeline={"max_batch": 0})
    path.write_text(yaml.safe_dump(bad))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("reload refused (config invalid), still running the previous config")
    assert "pipeline.max_batch" in daemon.log  # the log says what is wrong
    path.write_text("sources: [\n")  # broken YAML is refused the same way
    daemon.signal(signal.SIGHUP)
    daemon.wait_for_log("YAML syntax error")
    time.sleep(1.5)
    now = time.monotonic()
    assert len(notify.pings_between(now - 1.2, now)) >= 2  # still alive and fed
    assert not notify.having("RELOADING")
    assert daemon.process.poll() is None
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log


def test_stuck_frame_loop_stops_the_watchdog(short_tmp, model_path, notify, start_daemon):
    config = write_yaml(short_tmp / "config.yaml", config_data(model_path))
    daemon = start_daemon(config, harness=True, env={"EA_TEST_STALL_AFTER": "20", "EA_TEST_DRAIN_TIMEOUT": "1"})
    notify.wait_for("READY", "1", timeout=30)
    daemon.wait_for_log("harness: stalling the frame loop")
    stalled_at = time.monotonic()
    time.sleep(3.0)
    # at most one ping may race the stall (the loop's heartbeat is up to 0.5 s old); then silence
    late = notify.pings_between(stalled_at + 0.6, time.monotonic())
    assert late == [], late
    assert any(s.startswith("frame loop stuck") for s in notify.statuses()), notify.statuses()
    daemon.signal(signal.SIGTERM)
    # systemd would have killed it already; asked to stop, it says so and exits non-zero
    assert daemon.wait(20) == 1, daemon.log
    assert "did not stop within" in daemon.log


def test_camera_down_is_not_a_stuck_loop(short_tmp, model_path, notify, start_daemon):
    sources = [{"type": "camera", "name": "cam0", "device": "/dev/video-missing", "retry_initial_s": 0.2,
                "retry_max_s": 0.5}]
    config = write_yaml(short_tmp / "config.yaml", config_data(model_path, sources=sources))
    daemon = start_daemon(config)
    notify.wait_for("READY", "1", timeout=30)  # READY does not wait for the camera
    time.sleep(3.0)
    now = time.monotonic()
    assert len(notify.pings_between(now - 2.0, now)) >= 3  # keeps feeding: restarting would not help
    assert any("source cam0 retrying" in s for s in notify.statuses()), notify.statuses()
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log
