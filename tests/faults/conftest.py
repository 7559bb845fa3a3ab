"""The fault-injection suite reuses the service fixtures: a real daemon subprocess, its notify
socket, a real mosquitto."""

from service.conftest import (  # noqa: F401
    broker,
    collector_factory,
    model_path,
    notify,
    short_tmp,
    start_daemon,
)
