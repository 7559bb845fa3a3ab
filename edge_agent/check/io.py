"""Input and output checks: each frame source opened and timed, and the MQTT broker (DNS, TCP,
MQTT handshake including authentication)."""

import socket
import threading
import time
from typing import Any, List

from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult

SOURCE_SECONDS = 2.0  # per source: long enough for a frame rate, short enough for a technician
BROKER_TIMEOUT_S = 5.0


def checks(config: Any) -> List[CheckResult]:
    results = [_source(source) for source in config.sources]
    results += _broker(config)
    return results


def _source(source: Any) -> CheckResult:
    from edge_agent.sources import EndOfStream, SourceError, open_reader

    name = "source " + source.name
    reader = open_reader(source)
    try:
        reader.open()
    except SourceError as exc:
        return CheckResult(name, FAIL, "{}: {}".format(source.type, exc),
                           "check the cable/network and the address in sources (the service retries meanwhile)")
    frames, started = 0, time.monotonic()
    shape = None
    try:
        while time.monotonic() - started < SOURCE_SECONDS:
            image, _ = reader.read()
            shape = image.shape
            frames += 1
    except EndOfStream:
        pass
    except SourceError as exc:
        return CheckResult(name, FAIL, "{}: opened but {}".format(source.type, exc),
                           "check the camera's power and bandwidth")
    finally:
        reader.close()
    seconds = time.monotonic() - started
    if frames == 0:
        return CheckResult(name, FAIL, "{}: opened but delivered no frame".format(source.type),
                           "check the camera with `v4l2-ctl --list-devices` or the stream in a player")
    fps = frames / seconds if seconds > 0 else 0.0
    text = "{}: {} frames of {}x{} in {:.1f} s ({:.1f} fps)".format(source.type, frames, shape[1], shape[0],
                                                                      seconds, fps)
    if source.fps and fps < 0.8 * source.fps and source.type != "folder":
        return CheckResult(name, WARN, text + ", below the configured {} fps".format(source.fps),
                           "lower sources[].fps or the resolution, or check the camera's link")
    return CheckResult(name, PASS, text)


def _broker(config: Any) -> List[CheckResult]:
    mqtt = config.mqtt
    if not mqtt.enabled:
        return [CheckResult("broker", INFO, "mqtt.enabled is false: no telemetry")]
    address = "{}:{}".format(mqtt.host, mqtt.port)
    try:
        socket.getaddrinfo(mqtt.host, mqtt.port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return [CheckResult("broker-dns", FAIL, "cannot resolve {!r}: {}".format(mqtt.host, exc.strerror),
                            "check mqtt.host and the board's DNS (resolvectl status)")]
    results = [CheckResult("broker-dns", PASS, "{} resolves".format(mqtt.host))]
    try:
        socket.create_connection((mqtt.host, mqtt.port), timeout=BROKER_TIMEOUT_S).close()
    except OSError as exc:
        results.append(CheckResult("broker-tcp", FAIL, "{}: {}".format(address, exc.strerror or exc),
                                   "check mqtt.port, the broker and the firewall (telemetry waits in the outbox)"))
        return results
    results.append(CheckResult("broker-tcp", PASS, "{} accepts connections".format(address)))
    results.append(_mqtt_handshake(config))
    return results


def _mqtt_handshake(config: Any) -> CheckResult:
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    mqtt = config.mqtt
    outcome: List[str] = []
    done = threading.Event()

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        outcome.append("ok" if not reason.is_failure else str(reason))
        done.set()

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="{}-check".format(config.device.id),
                         protocol=paho.MQTTv5)
    client.suppress_exceptions = True
    client.on_connect = on_connect
    try:
        client.connect(mqtt.host, mqtt.port, keepalive=10)
        client.loop_start()
        done.wait(BROKER_TIMEOUT_S)
    except OSError as exc:
        return CheckResult("broker-mqtt", FAIL, "MQTT connect failed: {}".format(exc), "check mqtt.host/port")
    finally:
        client.disconnect()
        client.loop_stop()
    if not outcome:
        return CheckResult("broker-mqtt", FAIL, "no MQTT answer within {:.0f} s".format(BROKER_TIMEOUT_S),
                           "is that port an MQTT listener (TLS ports need mqtt TLS settings)?")
    if outcome[0] != "ok":
        return CheckResult("broker-mqtt", FAIL, "the broker refused the connection: {}".format(outcome[0]),
                           "check the user name and password file, and the broker's ACL for this device")
    return CheckResult("broker-mqtt", PASS, "MQTT v5 session accepted")


