"""Source faults in the daemon: a folder whose only "image" is a FIFO (reading it would block
forever), a folder and a video that do not exist yet. The other sources keep being inspected,
STATUS says which source waits and why, and a folder that appears later is picked up (issue 14)."""

import os
import signal
import time

import cv2
import numpy as np
from service.service_helpers import config_data, write_yaml


def test_stalled_and_missing_sources_do_not_stop_inspection(short_tmp, model_path, notify, start_daemon):
    stalled = short_tmp / "stalled"
    stalled.mkdir()
    os.mkfifo(str(stalled / "frame.png"))
    later = short_tmp / "later"
    sources = [
        {"type": "synthetic", "name": "cam0", "width": 96, "height": 64, "fps": 30},
        {"type": "folder", "name": "stalled", "path": str(stalled), "retry_initial_s": 0.2, "retry_max_s": 0.5},
        {"type": "folder", "name": "later", "path": str(later), "loop": True, "retry_initial_s": 0.2,
         "retry_max_s": 0.5},
        {"type": "video", "name": "novideo", "path": str(short_tmp / "none.mp4"), "retry_initial_s": 0.2,
         "retry_max_s": 0.5},
    ]
    daemon = start_daemon(write_yaml(short_tmp / "config.yaml", config_data(model_path, sources=sources)))
    notify.wait_for("READY", "1", timeout=30)
    time.sleep(2.0)
    now = time.monotonic()
    assert len(notify.pings_between(now - 1.5, now)) >= 2  # inspecting and fed
    status = notify.statuses()[-1]
    assert "source stalled retrying" in status and "holds no images" in status, status
    assert "source novideo retrying" in status and "does not exist" in status, status
    staging = short_tmp / "staging"
    staging.mkdir()
    cv2.imwrite(str(staging / "a.png"), np.full((64, 64, 3), 200, np.uint8))
    staging.rename(later)
    daemon.wait_for_log("source later: running", timeout=20)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(20) == 0, daemon.log
    assert "Traceback" not in daemon.log
