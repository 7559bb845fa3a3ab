"""The memory budget is compared with the running process, not only at admission (issue 14)."""

import signal

from service.service_helpers import config_data, write_yaml


def test_resident_memory_above_the_budget_is_reported(short_tmp, model_path, notify, start_daemon):
    # the plan of this tiny model fits 16 MB; the Python process with ONNX Runtime does not
    path = write_yaml(short_tmp / "config.yaml", config_data(model_path, memory={"limit_mb": 16, "margin_mb": 0}))
    daemon = start_daemon(path)
    notify.wait_for("READY", "1", timeout=30)
    daemon.wait_for_log("is above memory.limit_mb 16 MB", timeout=20)
    notify.wait_for("WATCHDOG", "1", timeout=10)  # reported, not a reason for systemd to restart
    assert any("over memory.limit_mb 16 MB" in s for s in notify.statuses()), notify.statuses()[-3:]
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log
