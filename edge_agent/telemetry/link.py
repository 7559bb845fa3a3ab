"""A thin adapter over paho-mqtt 2.x: connection settings, TLS, password loading, and callbacks
that only put small tuples on a queue for the telemetry thread (so an exception can never kill
paho's network thread, and no state is shared between the two threads).
"""

import os
import queue
import socket
import ssl
import threading
from pathlib import Path
from typing import Any, Optional, Tuple

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.errors import ConfigError
from edge_agent.telemetry.config import MqttConfig

QOS = 1


def read_password(config: MqttConfig) -> Optional[str]:
    """The broker password from a file or a systemd credential; its text is never logged."""
    if config.password_file is not None:
        path, key = config.password_file, "mqtt.password_file"
    elif config.password_credential is not None:
        folder = os.environ.get("CREDENTIALS_DIRECTORY")
        if not folder:
            raise ConfigError("mqtt.password_credential {!r}: $CREDENTIALS_DIRECTORY is not set. Add "
                              "'LoadCredential={}:/path/to/password' to the systemd unit, or use "
                              "mqtt.password_file.".format(config.password_credential, config.password_credential))
        path, key = Path(folder) / config.password_credential, "mqtt.password_credential"
    else:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("{}: cannot read the broker password from {}: {}. Create the file (one line, "
                          "readable by the agent's user).".format(key, path, exc.__class__.__name__)) from None
    password = text.splitlines()[0] if text else ""
    if not password:
        raise ConfigError("{}: {} is empty; put the password on its first line.".format(key, path))
    return password


def tls_context(config: MqttConfig) -> Optional[ssl.SSLContext]:
    tls = config.tls
    if not tls.enabled:
        return None
    try:
        context = ssl.create_default_context(cafile=str(tls.ca_file) if tls.ca_file else None)
        if tls.cert_file is not None and tls.key_file is not None:
            context.load_cert_chain(str(tls.cert_file), str(tls.key_file))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError("mqtt.tls: cannot load the CA / client certificate: {}. Check ca_file, cert_file and "
                          "key_file (PEM files readable by the agent's user).".format(exc)) from None
    return context


def explain_tls_failure(exc: ssl.SSLError, port: int) -> Tuple[str, str]:
    """(what failed, the fix in one sentence) for a TLS handshake error with the broker."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ("TLS certificate check failed: {}".format(exc.verify_message),
                "set mqtt.tls.ca_file to the CA that signed the broker's certificate, and mqtt.host to a name "
                "that certificate lists")
    return ("TLS handshake failed: {}".format(exc.reason or exc),
            "check that port {} is the broker's TLS listener (usually 8883) and that it accepts this client's "
            "certificate".format(port))


def new_client(config: MqttConfig, client_id: str, tls: Optional[ssl.SSLContext]) -> mqtt.Client:
    """A paho client with the configured protocol, TLS context and credentials: the agent's link and
    `edge-agent check` connect the same way. Raises ConfigError when the password cannot be read."""
    protocol = mqtt.MQTTv5 if config.protocol == "5" else mqtt.MQTTv311
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=protocol)
    # An exception escaping a callback would silently stop paho's thread (notes/mqtt-systemd.md).
    client.suppress_exceptions = True
    if tls is not None:
        client.tls_set_context(tls)
    if config.username:
        client.username_pw_set(config.username, read_password(config))
    return client


def valid_response_topic(topic: str) -> bool:
    """A topic a reply can be published to (paho raises on wildcards and over-long names)."""
    return 0 < len(topic.encode("utf-8")) <= 65535 and "+" not in topic and "#" not in topic \
        and "\x00" not in topic


def reply_properties(correlation: Optional[bytes]) -> Optional[Properties]:
    """PUBLISH properties echoing a v5 request's correlation data (None when it carried none)."""
    if correlation is None:
        return None
    properties = Properties(PacketTypes.PUBLISH)
    properties.CorrelationData = correlation
    return properties


class BrokerLink:
    """Owns the paho client. Events on `self.events`:
    ("connected", broker's maximum packet size or None) ("refused", reason) ("connect_failed",)
    ("disconnected", reason) ("ack", mid, reason or None) ("suback", [reasons]) ("desired", name, payload)
    ("command", name, payload, response topic or None, correlation data or None)."""

    def __init__(self, config: MqttConfig, client_id: str, command_prefix: str,
                 will: Tuple[str, bytes], wake: threading.Event) -> None:
        self.config = config
        self.command_prefix = command_prefix
        # desired state (retained on purpose: it is replayed at each connection, the handler is idempotent)
        self.desired_prefix = command_prefix[:-len("cmd/")] + "desired/"
        self.events = queue.SimpleQueue()  # of tuples, see the class docstring
        self.wake = wake
        self._tls = tls_context(config)
        self.client = new_client(config, client_id, self._tls)
        self.client.reconnect_delay_set(int(max(1, config.reconnect_min_s)), int(max(1, config.reconnect_max_s)))
        self.client.max_inflight_messages_set(config.inflight_max)
        self.client.max_queued_messages_set(0)
        self.client.will_set(will[0], will[1], qos=QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    @property
    def address(self) -> str:
        return "{}:{}".format(self.config.host, self.config.port)

    def start(self) -> None:
        """Returns at once; paho's thread connects and reconnects with backoff."""
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()

    def publish(self, topic: str, payload: bytes, retain: bool = False,
                properties: Optional[Properties] = None) -> int:
        return self.client.publish(topic, payload, qos=QOS, retain=retain, properties=properties).mid

    def subscribe_commands(self) -> None:
        self.client.subscribe([(self.command_prefix + "+", QOS), (self.desired_prefix + "+", QOS)])

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def _put(self, item: Tuple[Any, ...]) -> None:
        self.events.put(item)
        self.wake.set()

    # paho callbacks (network thread): enqueue only.
    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                    _properties: Optional[Properties]) -> None:
        if reason.is_failure:
            self._put(("refused", str(reason)))
            return
        # Unacknowledged messages of the previous connection: the outbox still holds them and
        # will send them again, so paho must not resend its own RAM copies as well.
        client.drop_out_messages()
        # MQTT v5: a broker with a packet size limit says so here; bigger packets get us disconnected
        limit = getattr(_properties, "MaximumPacketSize", None) if _properties is not None else None
        self._put(("connected", limit))

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._put(("connect_failed",))

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode,
                       _properties: Optional[Properties]) -> None:
        self._put(("disconnected", str(reason)))

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode,
                    _properties: Optional[Properties]) -> None:
        self._put(("ack", mid, str(reason) if reason.is_failure else None))

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any,
                      _properties: Optional[Properties]) -> None:
        self._put(("suback", [str(r) for r in reasons if r.is_failure]))

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        # A retained command would be replayed at every reconnect: only live commands count.
        if not message.retain and message.topic.startswith(self.command_prefix):
            properties = getattr(message, "properties", None)
            self._put(("command", message.topic[len(self.command_prefix):], bytes(message.payload),
                       getattr(properties, "ResponseTopic", None), getattr(properties, "CorrelationData", None)))
        elif message.topic.startswith(self.desired_prefix):
            self._put(("desired", message.topic[len(self.desired_prefix):], bytes(message.payload)))

    def diagnose(self, timeout_s: float = 3.0) -> str:
        """Why a connection attempt failed, found by repeating its first steps (paho does not say)."""
        try:
            with socket.create_connection((self.config.host, self.config.port), timeout=timeout_s) as sock:
                if self._tls is None:
                    return self._probe_mqtt(sock, timeout_s)
                with self._tls.wrap_socket(sock, server_hostname=self.config.host) as tls_sock:
                    return "TLS works; " + self._probe_mqtt(tls_sock, timeout_s)
        except socket.gaierror as exc:
            return "cannot resolve host name {!r} ({}); check mqtt.host and DNS".format(self.config.host, exc.strerror)
        except ssl.SSLError as exc:
            return "; ".join(explain_tls_failure(exc, self.config.port))
        except socket.timeout:
            return "no answer within {:.0f} s (host down or a firewall drops the packets)".format(timeout_s)
        except ConnectionRefusedError:
            return "connection refused (no broker listening on port {})".format(self.config.port)
        except OSError as exc:
            return exc.strerror or str(exc)

    def _probe_mqtt(self, sock: socket.socket, timeout_s: float) -> str:
        """Send an MQTT 3.1.1 CONNECT (its own client id, so our session is not taken over) and
        read what comes back: a CONNACK, a TLS record, silence, or a closed connection."""
        client_id = b"edge-agent-probe-%d" % os.getpid()
        variable = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(client_id).to_bytes(2, "big") + client_id
        port = self.config.port
        try:
            sock.sendall(b"\x10" + bytes([len(variable)]) + variable)
            reply = sock.recv(4)
        except socket.timeout:
            return ("port {} accepted the TCP connection but sent no MQTT reply within {:.0f} s: not an MQTT broker, "
                    "or a proxy/firewall holding the connection; check mqtt.host and mqtt.port".format(port, timeout_s))
        except OSError as exc:
            reply = b""
            if not isinstance(exc, ConnectionResetError):
                return "the connection broke during the MQTT handshake: {}".format(exc.strerror or exc)
        if reply[:1] == b"\x20":
            return "the broker answers MQTT (CONNACK code {}), but refused or dropped this client's session".format(
                reply[3] if len(reply) > 3 else "?")
        if reply[:1] in (b"\x15", b"\x16"):
            return "port {} speaks TLS, not plain MQTT: set mqtt.tls.enabled: true (and mqtt.tls.ca_file)".format(port)
        if self._tls is None and self._answers_tls(timeout_s):
            return "port {} speaks TLS, not plain MQTT: set mqtt.tls.enabled: true (and mqtt.tls.ca_file)".format(port)
        return "port {} closed the connection without an MQTT reply: not an MQTT broker? check mqtt.port".format(port)

    def _answers_tls(self, timeout_s: float) -> bool:
        """Whether the port completes a TLS handshake (certificates not checked: only the protocol)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with socket.create_connection((self.config.host, self.config.port), timeout=timeout_s) as sock:
                with context.wrap_socket(sock, server_hostname=self.config.host):
                    return True
        except (OSError, ssl.SSLError):
            return False
