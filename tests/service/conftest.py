"""Fixtures for the service tests (helpers in service_helpers.py)."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional

import pytest

# The real-mosquitto fixtures of the telemetry tests, for the daemon-with-telemetry tests here.
from telemetry.conftest import broker, collector_factory  # noqa: F401

from service.service_helpers import HARNESS, ROOT, Daemon, NotifyListener

from onnx_models import dark_spot_model


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    """A short directory: Unix socket paths are limited to 107 bytes."""
    path = Path(tempfile.mkdtemp(prefix="ea-svc-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def notify(short_tmp: Path) -> Iterator[NotifyListener]:
    listener = NotifyListener(str(short_tmp / "notify.sock"))
    yield listener
    listener.close()


@pytest.fixture
def model_path(short_tmp: Path) -> Path:
    return dark_spot_model(short_tmp / "dark_spot.onnx", size=(64, 64))


@pytest.fixture
def start_daemon(short_tmp: Path, notify: NotifyListener) -> Iterator[Callable[..., Daemon]]:
    started: List[Daemon] = []

    def start(config: Path, watchdog_usec: Optional[int] = 1_000_000, harness: bool = False,
              env: Optional[Dict[str, str]] = None) -> Daemon:
        environment = dict(os.environ)
        environment.pop("WATCHDOG_PID", None)
        environment.update(NOTIFY_SOCKET=notify.path, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        if watchdog_usec:
            environment["WATCHDOG_USEC"] = str(watchdog_usec)
        else:
            environment.pop("WATCHDOG_USEC", None)
        environment.update(env or {})
        entry = [str(HARNESS)] if harness else ["-m", "edge_agent.cli"]
        log_path = short_tmp / "daemon-{}.log".format(len(started))
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen([sys.executable] + entry + ["run", "--config", str(config)],
                                       cwd=str(ROOT), env=environment, stdout=log_file, stderr=subprocess.STDOUT)
        daemon = Daemon(process, log_path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.send_signal(signal.SIGKILL)
            daemon.process.wait(10)
