"""A real Prometheus (Debian's `prometheus`, installed by scripts/test.sh) scrapes a running agent's
/metrics and holds source/class labelled series and histogram buckets; every query of the shipped
Grafana dashboard returns data from what Prometheus holds."""

import json
import re
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

from .telemetry_helpers import REPO, agent_config, free_port, start_agent, stop_agent, write_agent_config

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
DASHBOARD = REPO / "docs" / "dashboards" / "grafana-edge-agent.json"
EVENT_DRIVEN = {"edge_agent_frames_dropped_total"}  # a series appears once its first frame was dropped


def _get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def _query(port, expr):
    data = json.loads(_get("http://127.0.0.1:{}/api/v1/query?query={}".format(port, urllib.parse.quote(expr))))
    assert data["status"] == "success", data
    return data["data"]["result"]


def _wait(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except OSError as exc:  # not listening yet
            last = exc
        time.sleep(0.5)
    raise AssertionError("timed out waiting for {} (last: {!r})".format(what, last))


def test_prometheus_scrapes_labels_and_buckets_and_the_dashboard_queries_work(tmp_path):
    if not shutil.which(PROMETHEUS):
        pytest.fail("prometheus is not installed: run scripts/test.sh (it installs Debian's prometheus) or "
                    "apt-get install prometheus")
    agent_port, prom_port = free_port(), free_port()
    data = agent_config(tmp_path, 1, fps=20)
    data.pop("mqtt")  # Prometheus works without a broker
    data["sources"].append(dict(data["sources"][0], name="cam_b_left", seed=5))
    config = write_agent_config(tmp_path, data)
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: edge-agent\n"
        "    static_configs: [{targets: ['127.0.0.1:%d']}]\n" % agent_port)
    agent = start_agent(config, tmp_path / "agent.log", extra=["--prometheus", "127.0.0.1:{}".format(agent_port)])
    prom_log = open(str(tmp_path / "prometheus.log"), "w")
    prom = subprocess.Popen([PROMETHEUS, "--config.file", str(tmp_path / "prometheus.yml"),
                             "--storage.tsdb.path", str(tmp_path / "tsdb"),
                             "--web.listen-address", "127.0.0.1:{}".format(prom_port)],
                            stdout=prom_log, stderr=subprocess.STDOUT)
    try:
        _wait(lambda: "edge_agent_frames_processed_total" in _get("http://127.0.0.1:{}/metrics".format(agent_port)),
              90, "the agent's /metrics")
        # several scrapes, so that rate() and histogram_quantile() have two samples to work with
        _wait(lambda: len(_query(prom_port, "count_over_time(edge_agent_frames_processed_total[1m])")) == 2
              and all(float(r["value"][1]) >= 4 for r in _query(
                  prom_port, "count_over_time(edge_agent_frames_processed_total[1m])")),
              90, "four scrapes of both sources")
        sources = {r["metric"]["source"] for r in _query(prom_port, "edge_agent_frames_processed_total")}
        assert sources == {"cam0", "cam_b_left"}  # the original names, "_" and all
        classes = {r["metric"]["class"] for r in _query(prom_port, "edge_agent_defects_total")}
        assert classes == {"dark"}
        buckets = _query(prom_port, 'edge_agent_latency_seconds_bucket{source="cam0"}')
        bounds = {r["metric"]["le"] for r in buckets}
        assert {"0.001", "0.05", "1", "+Inf"} <= bounds, bounds  # base units: seconds
        counts = {r["metric"]["le"]: float(r["value"][1]) for r in buckets}
        assert counts["+Inf"] > 0 and counts["0.0005"] <= counts["+Inf"]
        assert _query(prom_port, "edge_agent_health_degraded")
        # every query of the shipped Grafana dashboard names series Prometheus holds, and has data
        held = set(json.loads(_get("http://127.0.0.1:{}/api/v1/label/__name__/values".format(prom_port)))["data"])
        dashboard = json.loads(DASHBOARD.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                names = set(re.findall(r"\b(?:edge_agent|process)_[a-z_]+", target["expr"]))
                missing = names - held
                assert missing <= EVENT_DRIVEN, "panel {!r}: {} not held by Prometheus".format(panel["title"], missing)
                if not missing:
                    assert _query(prom_port, target["expr"]), "panel {!r}: no data".format(panel["title"])
    finally:
        prom.send_signal(signal.SIGTERM)
        prom.wait(20)
        prom_log.close()
        assert stop_agent(agent) == 0, (tmp_path / "agent.log").read_text()[-2000:]
