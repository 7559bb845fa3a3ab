"""A local writer's failures that are the disk's, not the code's: counted and reported, never a crash.

A full disk, a read-only remount or a lost permission fails every write until someone acts; the
writer drops what it cannot write, counts it, reports the cause in the agent's health (status,
MQTT) and logs once when it starts failing and once when it writes again. Anything else a writer
raises is a bug, left to the supervisor (restart with backoff).
"""

import logging

from edge_agent.metrics import Registry

log = logging.getLogger(__name__)


class WriteFaults:
    def __init__(self, name: str, where: str, registry: Registry) -> None:
        self.name = name
        self.where = where
        self._health = registry.health
        self._errors = registry.counter(name + "_write_errors")
        self.failing = False

    def failed(self, exc: OSError) -> None:
        self._errors.inc()
        if not self.failing:
            self.failing = True
            log.warning("%s: cannot write to %s (%s); dropping what cannot be written until it can, counted in "
                        "%s_write_errors", self.name, self.where, exc, self.name)
        self._health.report(self.name, "cannot write to {}: {}".format(self.where, exc.strerror or exc))

    def succeeded(self) -> None:
        if self.failing:
            self.failing = False
            log.info("%s: writing to %s again", self.name, self.where)
            self._health.clear(self.name)
