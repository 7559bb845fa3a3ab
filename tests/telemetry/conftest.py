"""Fixtures for the telemetry tests: a real mosquitto broker per test on a free loopback port
(torn down after) and collecting subscribers. Helpers live in telemetry_helpers.py."""

from pathlib import Path

import pytest

from .telemetry_helpers import MOSQUITTO, Broker, Collector


@pytest.fixture
def broker(tmp_path):
    if not Path(MOSQUITTO).exists():
        pytest.fail("mosquitto is not installed: run scripts/test.sh (it installs it) or "
                    "apt-get install mosquitto mosquitto-clients")
    folder = tmp_path / "broker"
    folder.mkdir()
    started = Broker(folder).start()
    yield started
    started.stop()


@pytest.fixture
def collector_factory():
    made = []

    def make(*args, **kwargs):
        made.append(Collector(*args, **kwargs))
        return made[-1]

    yield make
    for collector in made:
        collector.close()
