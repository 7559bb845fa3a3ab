"""Config models for MQTT telemetry: broker, TLS, credentials, topics, outbox and defect crops."""

from pathlib import Path
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from edge_agent.ids import NAME_MAX_LENGTH, NAME_PATTERN


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class MqttTlsConfig(_Strict):
    enabled: bool = Field(False, description="Connect over TLS (usually port 8883).")
    ca_file: Optional[Path] = Field(
        None, description="CA certificate (PEM) that signed the broker's certificate; null uses the system CAs.")
    cert_file: Optional[Path] = Field(None, description="Client certificate (PEM) for mutual TLS; needs key_file.")
    key_file: Optional[Path] = Field(None, description="Private key (PEM) of the client certificate.")

    @model_validator(mode="after")
    def _cert_and_key(self) -> "MqttTlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together: set both for mutual TLS, or neither")
        return self


class CropConfig(_Strict):
    enabled: bool = Field(False, description="Attach a small JPEG crop of each defect to its event.")
    max_side_px: int = Field(128, ge=16, le=1024, description="Longest side of the crop after downscaling, in pixels.")
    jpeg_quality: int = Field(80, ge=10, le=100, description="Starting JPEG quality; lowered until the crop fits.")
    max_bytes: int = Field(16384, ge=1024, le=65536,
                           description="Largest JPEG sent; a crop that cannot fit is left out (crop_omitted). "
                                       "At most 64 kB: the event (base64 crop + fields) must stay below the "
                                       "message size limits of managed brokers (often 128 kB).")
    margin_px: int = Field(8, ge=0, le=256, description="Context kept around the defect's box, in frame pixels.")


class HomeAssistantConfig(_Strict):
    enabled: bool = Field(False, description="Publish Home Assistant MQTT discovery (one retained device message "
                                             "with a sensor per metric, per-source reject rates and health).")
    prefix: str = Field("homeassistant", pattern=r"^[A-Za-z0-9_-]+$",
                        description="Home Assistant's discovery prefix (its MQTT integration setting).")


class MqttConfig(_Strict):
    enabled: bool = Field(False, description="Publish telemetry to an MQTT broker. Turned on when any other mqtt "
                                             "key is set and this one is not (a broker configured is a broker "
                                             "meant); set it to false to keep the settings but publish nothing.")
    host: str = Field("localhost", min_length=1, max_length=253, description="Broker host name or address.")
    port: int = Field(1883, ge=1, le=65535, description="Broker TCP port (1883 plain, 8883 usually TLS).")
    protocol: Literal["5", "3.1.1"] = Field(
        "5", description="MQTT protocol version. 5 reports refused publishes (ACL); 3.1.1 silently accepts them.")
    client_id: Optional[str] = Field(None, min_length=1, max_length=128,
                                     description="MQTT client id; null: 'edge-agent-' + device.id.")
    keepalive_s: int = Field(30, ge=5, le=3600, description="Keepalive interval; the broker declares us "
                             "offline (Last Will) after about 1.5 times this without traffic.")
    username: Optional[str] = Field(None, description="User name for password authentication.")
    password_file: Optional[Path] = Field(
        None, description="File whose first line is the password (never put the password in this config).")
    password_credential: Optional[str] = Field(
        None, description="systemd credential name holding the password (LoadCredential=NAME:PATH in the unit); "
                          "read from $CREDENTIALS_DIRECTORY/NAME.")
    tls: MqttTlsConfig = Field(MqttTlsConfig(), description="Transport security.")
    topic_root: str = Field("edge-agent", pattern=NAME_PATTERN, max_length=NAME_MAX_LENGTH,
                            description="First topic level: {topic_root}/v1/{site}/{line}/{device}/... ([a-z0-9_-]).")
    metrics_interval_s: float = Field(10.0, ge=0.1, le=3600, description="Seconds between metrics messages.")
    outbox_max_mb: float = Field(
        64.0, ge=0.01, le=65536, description="Largest size of the unsent-message store on disk (payload bytes); "
                                             "when full the oldest metrics are dropped first, then the oldest events.")
    event_queue_size: int = Field(
        10000, ge=10, le=1000000, description="Frames with defects held in memory between the frame loop and the "
                                              "outbox writer; overflow is counted, never waited for.")
    max_message_kb: int = Field(
        128, ge=1, le=262144, description="Largest MQTT message sent, in kB (the broker's own limit, announced in "
                                          "its MQTT v5 CONNACK, applies too). A queued message larger than the "
                                          "limit is moved aside and counted (outbox_rejected_total), never resent. "
                                          "128 suits most managed brokers.")
    inflight_max: int = Field(100, ge=1, le=65535, description="Messages sent but not yet acknowledged at once.")
    reconnect_min_s: float = Field(1.0, gt=0, le=60, description="First wait before reconnecting.")
    reconnect_max_s: float = Field(60.0, gt=0, le=3600, description="Longest wait between reconnects (backoff cap).")
    crop: CropConfig = Field(CropConfig(), description="Optional JPEG crops in defect events.")
    homeassistant: HomeAssistantConfig = Field(HomeAssistantConfig(), description="Home Assistant MQTT discovery "
                                                                                 "(opt-in).")

    @model_validator(mode="before")
    @classmethod
    def _configured_means_enabled(cls, data: Any) -> Any:
        if isinstance(data, dict) and data and "enabled" not in data:
            return dict(data, enabled=True)
        return data

    @model_validator(mode="after")
    def _one_password_source(self) -> "MqttConfig":
        if self.password_file is not None and self.password_credential is not None:
            raise ValueError("set password_file or password_credential, not both")
        if (self.password_file is not None or self.password_credential is not None) and not self.username:
            raise ValueError("a password needs a username: set mqtt.username")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be >= reconnect_min_s")
        return self


class TelemetryConfig(_Strict):
    verdicts: Literal["all", "ng", "none"] = Field(
        "ng", description="Per-part verdict messages (events/verdict), one per inspected frame: all (OK and NG), "
                          "ng (only frames with a defect) or none. Metrics count inspected and NG frames either way.")


class PrometheusConfig(_Strict):
    listen: Optional[str] = Field(
        None, pattern=r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):?[0-9]{1,5}$",
        description="Serve /metrics for Prometheus at HOST:PORT (e.g. 127.0.0.1:9464; a bare PORT binds loopback); "
                    "null: off. Use 0.0.0.0:PORT only where the network is trusted: there is no authentication.")
