"""mqtt settings without `enabled` mean a broker is wanted; the probe never reports a fake 0 % CPU."""

import time

from edge_agent.config_loader import load_config
from edge_agent.telemetry.probe import SystemProbe


def test_a_configured_broker_is_enabled_unless_turned_off():
    assert load_config(None, {"mqtt": {"host": "broker.plant"}}).mqtt.enabled is True
    assert load_config(None, {"mqtt": {"host": "broker.plant", "enabled": False}}).mqtt.enabled is False
    assert load_config(None, {}).mqtt.enabled is False


def test_cpu_is_left_out_until_it_can_be_measured(tmp_path):
    probe = SystemProbe(0.3, tmp_path, {}).start()
    try:
        assert "cpu_util_pct" not in probe.latest  # primed a moment ago: unknown, not 0.0
        deadline = time.monotonic() + 5
        while "cpu_util_pct" not in probe.latest and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "cpu_util_pct" in probe.latest and "process_cpu_pct" in probe.latest
    finally:
        probe.close()
