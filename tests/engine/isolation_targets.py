"""Build steps for the isolation tests, importable by the spawned child."""

import os
import signal
from pathlib import Path


def killed_mid_write(report, target):
    Path(target).write_bytes(b"half an engine")
    report("writing", 0.5)
    os.kill(os.getpid(), signal.SIGKILL)  # what the out-of-memory killer does


def slow(report, seconds):
    import time

    time.sleep(seconds)
    return {"slept": seconds}


def raises(report):
    raise RuntimeError("TensorRT internal error: boom")
