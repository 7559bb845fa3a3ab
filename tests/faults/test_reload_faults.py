"""SIGHUP with configs that pass the schema but cannot be used: the old config keeps inspecting,
the reason is logged, and a good config is still applied afterwards (issue 14)."""

import signal
import time

from service.service_helpers import config_data, write_yaml

from onnx_models import dark_spot_model


def _bad_configs(short_tmp, model_path):
    truncated = short_tmp / "truncated.onnx"
    truncated.write_bytes(model_path.read_bytes()[:-10])
    wrong_size = dark_spot_model(short_tmp / "wide.onnx", size=(128, 128))
    nan = dark_spot_model(short_tmp / "nan.onnx", nan=True)  # passes the graph check, fails the trial inference
    tls = {"enabled": True, "host": "127.0.0.1", "port": 8883, "tls": {"enabled": True, "ca_file": "missing-ca.pem"}}
    password = {"enabled": True, "host": "127.0.0.1", "username": "u", "password_file": "missing-password"}
    return [
        (config_data(truncated), "truncated or not an ONNX model"),
        (config_data(wrong_size), "has shape"),
        (config_data(nan), "the output holds NaN or Inf on 6 of 6 sample image(s)"),
        (config_data(model_path, memory={"limit_mb": 20}), "memory.limit_mb is 20"),
        (config_data(model_path, mqtt=tls), "mqtt.tls: cannot load the CA"),
        (config_data(model_path, mqtt=password), "cannot read the broker password"),
    ]


def test_unusable_reloads_are_refused_and_the_old_config_keeps_running(short_tmp, model_path, notify,
                                                                       start_daemon):
    path = short_tmp / "config.yaml"
    write_yaml(path, config_data(model_path))
    daemon = start_daemon(path)
    notify.wait_for("READY", "1", timeout=30)
    for number, (data, reason) in enumerate(_bad_configs(short_tmp, model_path), 1):
        write_yaml(path, data)
        daemon.signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while daemon.log.count("reload refused (it cannot be used)") < number:
            assert daemon.process.poll() is None, daemon.log
            assert time.monotonic() < deadline, daemon.log
            time.sleep(0.05)
        assert reason in daemon.log, (reason, daemon.log)
    time.sleep(1.2)
    now = time.monotonic()
    assert len(notify.pings_between(now - 1.0, now)) >= 1  # still inspecting and fed
    assert not notify.having("RELOADING")  # nothing was torn down
    assert any("reload refused" in s for s in notify.statuses())
    # a good config after all those is applied
    write_yaml(path, config_data(model_path, sources=[
        {"type": "synthetic", "name": "cam0", "width": 96, "height": 64, "fps": 50},
        {"type": "synthetic", "name": "cam1", "width": 64, "height": 64, "fps": 50, "seed": 7}]))
    daemon.signal(signal.SIGHUP)
    readies = notify.wait_for("READY", "1", timeout=30, count=2)
    assert readies[1][1]["STATUS"].startswith("running: 2 source(s)")
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log
    assert "exiting with status 0" in daemon.log
    assert "Traceback" not in daemon.log


def test_a_sighup_storm_with_bad_configs_leaves_the_agent_running(short_tmp, model_path, notify, start_daemon):
    path = short_tmp / "config.yaml"
    good = config_data(model_path)
    write_yaml(path, good)
    daemon = start_daemon(path)
    notify.wait_for("READY", "1", timeout=30)
    bad = [config_data(model_path, memory={"limit_mb": 20}), "sources: [\n", "memory: {}\nmemory: {}\n"]
    for round_ in range(30):
        content = bad[round_ % len(bad)]
        if isinstance(content, str):
            path.write_text(content)
        else:
            write_yaml(path, content)
        daemon.signal(signal.SIGHUP)
        time.sleep(0.05)
    time.sleep(2.0)
    assert daemon.process.poll() is None, daemon.log
    now = time.monotonic()
    assert len(notify.pings_between(now - 1.0, now)) >= 1
    frames_before = daemon.log.count("frame loop stopped")
    assert frames_before == 0  # no bad config ever tore the pipeline down
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log


def test_a_dense_signal_storm_never_deafens_the_daemon(short_tmp, model_path, notify, start_daemon):
    """A signal handler that sets a threading.Event deadlocks when the signal lands while the main
    thread holds that event's lock (in wait() or clear()): the 60-minute soak's agent stopped
    applying reloads after a SIGHUP burst and ignored the SIGTERM at the end."""
    path = short_tmp / "config.yaml"
    write_yaml(path, config_data(model_path))
    daemon = start_daemon(path)
    notify.wait_for("READY", "1", timeout=30)
    for _ in range(3000):  # the config is unchanged: each one is read, compared and dropped
        daemon.signal(signal.SIGHUP)
        time.sleep(0.0005)
    write_yaml(path, config_data(model_path, sources=[
        {"type": "synthetic", "name": "cam0", "width": 64, "height": 64, "fps": 40}]))
    daemon.signal(signal.SIGHUP)
    notify.wait_for("READY", "1", timeout=30, count=2)  # the changed config is applied after the storm
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log[-3000:]


def test_a_start_that_fails_logs_its_real_exit_status(short_tmp, model_path, notify, start_daemon):
    path = write_yaml(short_tmp / "config.yaml", config_data(model_path, memory={"limit_mb": 20}))
    daemon = start_daemon(path)
    assert daemon.wait(60) == 3, daemon.log
    assert "exiting with status 3" in daemon.log and "memory.limit_mb is 20" in daemon.log
    assert "Traceback" not in daemon.log
