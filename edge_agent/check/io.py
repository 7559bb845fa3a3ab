"""Input and output checks: each frame source opened and timed, and the MQTT broker (DNS, TCP, TLS,
MQTT handshake with the configured credentials)."""

import socket
import ssl
import threading
import time
from typing import Any, List

from edge_agent.check.result import FAIL, INFO, PASS, WARN, CheckResult

SOURCE_SECONDS = 2.0  # per source: long enough for a frame rate, short enough for a technician
BROKER_TIMEOUT_S = 5.0


def checks(config: Any) -> List[CheckResult]:
    results = [_source(source) for source in config.sources]
    results += broker_checks(config)
    return results


def _source(source: Any) -> CheckResult:
    from edge_agent.sources import EndOfStream, SourceError, UndecodableFrame, open_reader

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
            try:
                image, _ = reader.read()
            except UndecodableFrame:
                continue  # a corrupt image in a folder; the agent skips it the same way
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


def broker_checks(config: Any) -> List[CheckResult]:
    """DNS, TCP, TLS (with the configured CA and client certificate) and the MQTT handshake with the
    configured credentials: connecting exactly as the agent does (edge_agent.telemetry.link)."""
    from edge_agent.errors import ConfigError
    from edge_agent.telemetry.link import explain_tls_failure, tls_context

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
        tcp = socket.create_connection((mqtt.host, mqtt.port), timeout=BROKER_TIMEOUT_S)
    except OSError as exc:
        results.append(CheckResult("broker-tcp", FAIL, "{}: {}".format(address, exc.strerror or exc),
                                   "check mqtt.port, the broker and the firewall (telemetry waits in the outbox)"))
        return results
    results.append(CheckResult("broker-tcp", PASS, "{} accepts connections".format(address)))
    try:
        tls = tls_context(mqtt)
    except ConfigError as exc:
        tcp.close()
        results.append(CheckResult("broker-tls", FAIL, str(exc), "point mqtt.tls.ca_file, cert_file and key_file "
                                   "at PEM files the agent's user can read"))
        return results
    if tls is None:
        tcp.close()
        results.append(CheckResult("broker-tls", INFO, "mqtt.tls.enabled is false: telemetry travels unencrypted"))
    else:
        try:
            with tls.wrap_socket(tcp, server_hostname=mqtt.host) as secured:
                version = secured.version()
        except ssl.SSLError as exc:
            problem, fix = explain_tls_failure(exc, mqtt.port)
            results.append(CheckResult("broker-tls", FAIL, "{}: {}".format(address, problem), fix))
            return results
        except OSError as exc:
            results.append(CheckResult("broker-tls", FAIL, "{}: the TLS handshake broke off: {}".format(
                address, exc.strerror or exc), "check that mqtt.port is the broker's TLS listener (usually 8883)"))
            return results
        finally:
            tcp.close()
        results.append(CheckResult("broker-tls", PASS, "{} with a certificate valid for {}".format(
            version, mqtt.host)))
    results.append(_mqtt_handshake(config, tls))
    return results


def _mqtt_handshake(config: Any, tls: Any) -> CheckResult:
    from edge_agent.errors import ConfigError
    from edge_agent.telemetry.link import new_client

    mqtt = config.mqtt
    outcome: List[Any] = []
    done = threading.Event()

    def on_connect(_client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        outcome.append(reason)
        done.set()

    try:
        # Its own client id: reusing the agent's would disconnect a running agent.
        client = new_client(mqtt, "{}-check".format(config.device.id), tls)
    except ConfigError as exc:
        if mqtt.password_credential is not None:
            # systemd hands credentials to the service only, not to a technician's shell.
            fix = ("run the check with the service's credential: sudo systemd-run --pipe --wait -p User=edge-agent "
                   "-p LoadCredential={}:/path/to/password /opt/edge-agent/venv/bin/edge-agent check --config "
                   "/etc/edge-agent/config.yaml".format(mqtt.password_credential))
        else:
            fix = "create the password file (one line, readable by the agent's user) or fix mqtt.password_file"
        return CheckResult("broker-auth", FAIL, str(exc), fix)
    client.on_connect = on_connect
    who = "user {!r}".format(mqtt.username) if mqtt.username else "anonymous"
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
        fix = ("is that port an MQTT listener? check mqtt.port" if tls is not None else
               "is that port an MQTT listener? a TLS port needs mqtt.tls.enabled: true")
        return CheckResult("broker-mqtt", FAIL, "no MQTT answer within {:.0f} s".format(BROKER_TIMEOUT_S), fix)
    reason = outcome[0]
    if reason.is_failure:
        text = "the broker refused the connection ({}): {}".format(who, reason)
        # mosquitto answers a wrong password with "Not authorized" as well as "Bad user name or password".
        if mqtt.username:
            fix = ("check mqtt.username and the password in mqtt.password_file (or the systemd credential) with "
                   "the broker's administrator")
        else:
            fix = "this broker wants a login: set mqtt.username and mqtt.password_file"
        return CheckResult("broker-auth", FAIL, text, fix)
    return CheckResult("broker-mqtt", PASS, "MQTT {} session accepted ({}{})".format(
        mqtt.protocol, who, ", TLS" if tls is not None else ""))
