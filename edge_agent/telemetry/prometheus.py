"""`/metrics` for Prometheus: the metrics registry in the exposition format, read at each scrape.

Off unless `prometheus.listen` (or `--prometheus HOST:PORT`) is set; binds loopback unless the
address says otherwise. The exporter owns no metric state: every scrape reads the registry that
the frame loop writes (counters, gauges, and the histograms' cumulative buckets), and the agent's
health. Names follow Prometheus conventions: `edge_agent_` prefix, base units (seconds, bytes),
labels as labels (`source`, `class`, `reason`, `stage`, ...), counters ending in `_total`:

    edge_agent_frames_processed_total{source="cam0"}      edge_agent_defects_total{class="scratch"}
    edge_agent_latency_seconds_bucket{source="cam0",le="0.05"}   edge_agent_health_degraded
"""

import logging
from typing import Any, Iterator, Optional, Tuple
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from edge_agent import __version__
from edge_agent.errors import ConfigError
from edge_agent.metrics import BUCKET_BOUNDS, Registry
from edge_agent.supervisor import SUPERVISOR, Task, serve
from edge_agent.telemetry.checks import StallCheck
from edge_agent.telemetry.window import base_name, describe

log = logging.getLogger(__name__)

PREFIX = "edge_agent_"
# registry unit -> (Prometheus base unit suffix, factor to base units)
BASE_UNITS = {"ms": ("seconds", 0.001), "s": ("seconds", 1.0), "mb": ("bytes", 2.0**20), "px": ("pixels", 1.0),
              "count": ("", 1.0), "": ("", 1.0)}


def parse_listen(text: str) -> Tuple[str, int]:
    """"HOST:PORT" or "PORT" (loopback) -> (host, port); ConfigError naming the fix otherwise."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError("prometheus.listen {!r}: give HOST:PORT, e.g. 127.0.0.1:9464 (loopback) or "
                          "0.0.0.0:9464 (every interface)".format(text))
    return host, int(port)


class RegistryCollector:
    """A prometheus_client collector that turns the registry into metric families at each scrape."""

    def __init__(self, registry: Registry, stall: Optional[StallCheck] = None) -> None:
        self.registry = registry
        self.stall = stall  # set when no telemetry thread runs the health checks (MQTT off)

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        families = {}
        # A name kept both unlabelled and labelled (latency_ms and latency_ms{source}): Prometheus
        # wants one label set per family, so the labelled series stay; sum() gives the aggregate.
        labelled = {name for source in (self.registry.counters(), self.registry.gauges(),
                                        self.registry.histograms()) for name, labels, _ in source if labels}

        def family(kind: Any, name: str, unit: str, labels: Tuple[str, ...]) -> Any:
            if not labels and name in labelled:
                return _Discard()
            suffix, _ = BASE_UNITS.get(unit, (unit, 1.0))
            full = PREFIX + base_name(name, unit) + ("_" + suffix if suffix else "")
            if full not in families:
                families[full] = kind(full, describe(base_name(name, unit)), labels=list(labels))
            return families[full]

        for name, labels, value in self.registry.counters():
            unit = self.registry.unit(name)
            keys = tuple(k for k, _ in labels)
            family(CounterMetricFamily, name, unit, keys).add_metric([v for _, v in labels],
                                                                     value * BASE_UNITS.get(unit, ("", 1.0))[1])
        for name, labels, gauge_value in self.registry.gauges():
            if gauge_value is None:
                continue
            unit = self.registry.unit(name)
            keys = tuple(k for k, _ in labels)
            family(GaugeMetricFamily, name, unit, keys).add_metric([v for _, v in labels],
                                                                   gauge_value * BASE_UNITS.get(unit, ("", 1.0))[1])
        for name, labels, histogram in self.registry.histograms():
            unit = self.registry.unit(name)
            factor = BASE_UNITS.get(unit, ("", 1.0))[1]
            counts, total_sum, _ = histogram.cumulative()
            buckets = [("{:g}".format(bound * factor), count) for bound, count in zip(BUCKET_BOUNDS, counts)]
            buckets.append(("+Inf", counts[-1]))
            keys = tuple(k for k, _ in labels)
            family(HistogramMetricFamily, name, unit, keys).add_metric([v for _, v in labels], buckets,
                                                                       total_sum * factor)
        yield from families.values()

        if self.stall is not None:
            self.stall.run()
        snapshot = self.registry.health.snapshot()
        degraded = GaugeMetricFamily(PREFIX + "health_degraded", "1 while any component reports a problem "
                                     "(the MQTT status says which, with reasons)")
        degraded.add_metric([], 1.0 if snapshot.state == "degraded" else 0.0)
        yield degraded
        problems = GaugeMetricFamily(PREFIX + "health_problem", "1 per component reporting a problem",
                                     labels=["component"])
        for reason in snapshot.reasons:
            problems.add_metric([reason.split(": ", 1)[0]], 1.0)
        yield problems
        info = InfoMetricFamily(PREFIX + "agent", "edge-agent version")
        info.add_metric([], {"version": __version__})
        yield info


class _Discard:
    def add_metric(self, *args: Any) -> None:
        pass


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's signature
        log.debug("prometheus: " + format, *args)


class PrometheusExporter:
    def __init__(self, registry: Registry, listen: str, check_stalls: bool = False) -> None:
        self.host, self.port = parse_listen(listen)
        try:
            from prometheus_client import CollectorRegistry, make_wsgi_app
            from prometheus_client.process_collector import ProcessCollector
        except ImportError:
            raise ConfigError("prometheus.listen is set but prometheus_client is not installed: "
                              "pip install 'edge-agent[prometheus]' (or unset prometheus.listen)") from None
        self.collectors = CollectorRegistry()
        self.collectors.register(RegistryCollector(registry, StallCheck(registry, registry.health)
                                                   if check_stalls else None))
        ProcessCollector(registry=self.collectors)  # process_resident_memory_bytes, cpu seconds...
        self._app = make_wsgi_app(self.collectors)
        self._server: Optional[WSGIServer] = None
        self._task: Optional[Task] = None

    def start(self) -> "PrometheusExporter":
        try:
            self._server = make_server(self.host, self.port, self._app, handler_class=_QuietHandler)
        except OSError as exc:
            raise ConfigError("prometheus.listen {}:{}: cannot listen there: {}. Pick a free port or another "
                              "address.".format(self.host, self.port, exc.strerror or exc)) from None
        self.port = self._server.server_port
        # supervised: a crash of the serving loop is logged, counted and the loop restarted
        self._task = SUPERVISOR.spawn("prometheus", serve(self._server))
        log.info("prometheus: serving http://%s:%d/metrics", self.host, self.port)
        return self

    def close(self) -> None:
        if self._task is not None:
            self._task.stop()
            self._task.join(5.0)
            self._task = None
        if self._server is not None:
            self._server.server_close()
            self._server = None


def open_prometheus(config: Any, registry: Registry) -> Optional[PrometheusExporter]:
    """A started exporter when prometheus.listen is set, else None."""
    if not config.prometheus.listen:
        return None
    # With MQTT on, the telemetry thread runs the health checks; without it, each scrape does.
    return PrometheusExporter(registry, config.prometheus.listen, check_stalls=not config.mqtt.enabled).start()
