"""A short soak in CI: the daemon with periodic faults (broker outage, refused and applied
reloads, a SIGHUP burst) for two minutes; fails on lost seq or growth (scripts/soak.py)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_short_soak_loses_nothing_and_does_not_grow():
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "soak.py"), "--minutes", "2", "--fault-every", "10",
                           "--max-rss-growth-pct", "5", "--json"], capture_output=True, text=True, timeout=400)
    result = json.loads(proc.stdout)
    assert proc.returncode == 0 and result["ok"], (result, proc.stderr[-2000:])
    assert result["faults"] >= 8 and len(result["fault_kinds"]) == 4
    assert result["lost_metrics_seq"] == 0 and result["lost_events_seq"] == 0 and result["events_received"] > 0
    assert result["good_reloads"] >= 1 and result["reloads_applied"] >= result["good_reloads"]
