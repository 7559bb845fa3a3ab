"""The plain-string availability topic ({base}/availability: `online` / `offline`, retained) for
tools that expect one (Home Assistant, Node-RED dashboards, uptime monitors).

MQTT gives each connection one Last Will, and the main connection's Will is the JSON `status`
message. So availability rides on its own small connection (client id + "-availability") whose
Will is "offline": when the agent dies or its network goes, the broker publishes both Wills
after about 1.5 × `mqtt.keepalive_s`. Its paho callbacks only publish; they cannot raise.
"""

import logging
from typing import Any, Optional

from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edge_agent.telemetry.config import MqttConfig
from edge_agent.telemetry.link import QOS, new_client, tls_context

log = logging.getLogger(__name__)

ONLINE = b"online"
OFFLINE = b"offline"


class AvailabilityLink:
    def __init__(self, config: MqttConfig, client_id: str, topic: str) -> None:
        self.config = config
        self.topic = topic
        self.client = new_client(config, client_id + "-availability", tls_context(config))
        self.client.reconnect_delay_set(int(max(1, config.reconnect_min_s)), int(max(1, config.reconnect_max_s)))
        self.client.will_set(topic, OFFLINE, qos=QOS, retain=True)
        self.client.on_connect = self._on_connect
        self.started = False

    def start(self) -> "AvailabilityLink":
        self.started = True
        self.client.connect_async(self.config.host, self.config.port, keepalive=self.config.keepalive_s)
        self.client.loop_start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """A clean stop: say "offline" ourselves (a clean disconnect does not fire the Will)."""
        if self.client.is_connected():
            info = self.client.publish(self.topic, OFFLINE, qos=QOS, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError) as exc:  # lost the link meanwhile: the Will says it
                log.debug("availability: offline not confirmed: %s", exc)
        if self.started:
            self.client.disconnect()
            self.client.loop_stop()

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: ReasonCode,
                    _properties: Optional[Properties]) -> None:
        if not reason.is_failure:
            client.publish(self.topic, ONLINE, qos=QOS, retain=True)
