"""Helpers for the telemetry tests: a real mosquitto broker on a free loopback port, a collecting
subscriber, agent configs (synthetic camera, tiny ONNX model) and agent subprocesses."""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from onnx_models import dark_spot_model

REPO = Path(__file__).resolve().parents[2]

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SCHEMAS = REPO / "docs" / "schemas"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Broker:
    """mosquitto with a generated config; stop/start keep the port (for outage tests)."""

    def __init__(self, folder: Path, port=None, extra="", tls=None, persistent=False):
        self.folder = folder
        self.port = port or free_port()
        self.log = folder / "mosquitto.log"
        self.conf = folder / "mosquitto.conf"
        # persistent: sessions and their queued QoS 1 messages survive a restart (saved at SIGTERM),
        # as on a production broker; the default forgets everything, like a crash
        persistence = ["persistence true", "persistence_location {}/".format(folder)] if persistent else [
            "persistence false"]
        lines = ["per_listener_settings false"] + persistence + ["log_dest file {}".format(self.log),
                 "log_type all", "listener {} 127.0.0.1".format(self.port)]
        if tls:
            lines += ["cafile {}".format(tls["ca"]), "certfile {}".format(tls["cert"]), "keyfile {}".format(tls["key"])]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto', who cannot read the temp files
        lines.append(extra or "allow_anonymous true")
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: " + self.log.read_text() if self.log.exists() else "")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not listen on {}".format(self.port))

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


class Collector:
    """Subscribes to '#' and keeps (topic, payload, retain) tuples."""

    def __init__(self, port, username=None, password=None, tls_ca=None, topic="#", durable_id=None):
        """`durable_id`: a persistent session under that client id (the broker queues QoS 1 messages
        for it while it is away, and a new Collector with the same id receives them)."""
        self.messages = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2,
                                  client_id=durable_id or "collector-{}".format(time.monotonic_ns()),
                                  protocol=mqtt.MQTTv5)
        if username:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.subscribed = threading.Event()
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        session = {}
        if durable_id:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = 3600
            session = {"clean_start": False, "properties": properties}
        self.client.connect("127.0.0.1" if not tls_ca else "localhost", port, **session)
        self.client.loop_start()

    def _on_message(self, _client, _userdata, message):
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), message.retain))

    def json(self, suffix):
        with self._lock:
            return [json.loads(p) for t, p, _ in self.messages if t.endswith(suffix)]

    def wait_for(self, predicate, timeout=20.0, what="messages"):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate(self):
                return
            time.sleep(0.05)
        raise AssertionError("timed out waiting for {}; got topics {}".format(
            what, sorted({t for t, _, _ in self.messages})))

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def agent_config(tmp_path, port, fps=60, interval=0.5, **mqtt_extra):
    """A config dict: synthetic camera at `fps`, the dark-spot model, telemetry to 127.0.0.1:port."""
    model = tmp_path / "dark.onnx"
    if not model.exists():
        dark_spot_model(model, threshold=0.0)  # with mean 0.5 / std 0.25: pixels below mid-grey are defects
    mqtt_section = {"enabled": True, "host": "127.0.0.1", "port": port, "metrics_interval_s": interval,
                    "reconnect_min_s": 1, "reconnect_max_s": 2}
    mqtt_section.update(mqtt_extra)
    return {
        "device": {"id": "cell-7", "site": "plant-a", "line": "line-2"},
        "model": {"path": str(model), "input": {"width": 64, "height": 64, "mean": [0.5] * 3, "std": [0.25] * 3},
                  "output": {"classes": ["background", "dark"]}, "thresholds": {"min_area_px": 30}},
        "sources": [{"type": "synthetic", "name": "cam0", "fps": fps, "width": 160, "height": 120}],
        "mqtt": mqtt_section,
        "paths": {"state_dir": str(tmp_path / "state")},
    }


def write_agent_config(tmp_path, data, name="agent.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def start_agent(config_path, log_path, command="run", extra=()):
    """`python -m edge_agent.cli run --config ...` from the worktree, logging to a file."""
    handle = open(str(log_path), "w")
    proc = subprocess.Popen([sys.executable, "-m", "edge_agent.cli", "--log-level", "info", command,
                             "--config", str(config_path)] + list(extra), cwd=str(REPO), stdout=handle,
                            stderr=subprocess.STDOUT)
    proc.log_handle = handle
    return proc


def stop_agent(proc, sig=signal.SIGTERM, timeout=20):
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(timeout)
    proc.log_handle.close()
    return proc.returncode


class InProcessAgent:
    """Pipeline + telemetry in this process, the frame loop in a thread (faster than a subprocess)."""

    def __init__(self, data):
        from edge_agent.config_loader import load_config
        from edge_agent.metrics import Registry

        self.config = load_config(None, data)
        self.registry = Registry()
        self.stop_event = threading.Event()
        self.telemetry = None

    def __enter__(self):
        from edge_agent.agent import running_pipeline
        from edge_agent.telemetry import open_telemetry, pipeline_facts

        self.telemetry = open_telemetry(self.config, self.registry)
        self._context = running_pipeline(self.config, self.registry, [self.telemetry])
        self.pipeline = self._context.__enter__()
        self.telemetry.update_facts(pipeline_facts(self.config, self.pipeline))
        self._thread = threading.Thread(target=self.pipeline.run, args=(self.stop_event,), daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.stop_event.set()
        self._thread.join(30)
        self._context.__exit__(None, None, None)
        self.telemetry.close()


def load_schema(name):
    return json.loads((SCHEMAS / "mqtt-{}.schema.json".format(name)).read_text())


def seqs(messages, session):
    return sorted({m["seq"] for m in messages if m["session"] == session})


def make_test_ca(folder: Path):
    """A CA and a server certificate for localhost / 127.0.0.1, made with the openssl CLI."""
    def run(*args):
        subprocess.run(["openssl"] + list(args), check=True, capture_output=True, cwd=str(folder))

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=edge-agent test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", "server.key",
        "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.crt")
    return {"ca": folder / "ca.crt", "cert": folder / "server.crt", "key": folder / "server.key"}


def password_file(folder: Path, user, password):
    path = folder / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), user, password], check=True, capture_output=True)
    return path


def published_keys(message):
    """Every key of a message, a labelled array's fields as `by_source[].frames_captured_total`."""
    keys = set()
    for key, value in message.items():
        keys.add(key)
        if key.startswith("by_") and isinstance(value, list):
            keys.update("{}[].{}".format(key, field) for row in value for field in row)
    return keys


def documented_metrics():
    """{key: (type, unit)} from the metrics table of docs/mqtt.md, and every `backticked` name in it."""
    import re

    text = (REPO / "docs" / "mqtt.md").read_text()
    section = text[text.index("## `metrics`"):text.index("## `events/defect`")]
    table = {key: (kind, unit.strip()) for key, kind, unit in
             re.findall(r"^\| `([^`]+)` \| (\w+) \| ([^|]+) \|", section, re.M)}
    return table, set(re.findall(r"`([A-Za-z0-9_.\[\]{}/-]+)`", text))
