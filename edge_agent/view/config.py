"""Config model of the technician's live view (`view:`), off unless `listen` is set."""

import ipaddress
from pathlib import Path
from typing import Optional, Tuple

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator


class ViewConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)

    listen: Optional[str] = Field(
        None, description="HOST:PORT to serve the live view on (e.g. 127.0.0.1:8090); null: off. A host other "
                          "than loopback needs `token`.")
    token: Optional[SecretStr] = Field(
        None, min_length=8, description="Access token (8+ characters), required when `listen` is not loopback: "
                                        "open http://HOST:PORT/?token=TOKEN.")
    max_fps: float = Field(4.0, gt=0, le=30, description="Most frames per second and source encoded for the view "
                                                        "(off the frame loop's thread).")
    verdicts: int = Field(20, ge=1, le=500, description="Last verdicts listed on the page.")
    jpeg_quality: int = Field(80, ge=10, le=100, description="JPEG quality of the view's frames.")
    calibration_dir: Optional[Path] = Field(
        None, description="Where 'save as calibration image' writes; null: calibration/ in the state directory.")

    @property
    def address(self) -> Optional[Tuple[str, int]]:
        return parse_listen(self.listen) if self.listen else None

    @field_validator("listen")
    @classmethod
    def _listen_is_host_port(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            parse_listen(value)
        return value

    @model_validator(mode="after")
    def _token_off_loopback(self) -> "ViewConfig":
        if self.listen is None:
            return self
        host, _ = parse_listen(self.listen)
        if not is_loopback(host) and self.token is None:
            raise ValueError("view.listen {} is reachable from other machines: set view.token (8+ characters) "
                             "or listen on 127.0.0.1".format(self.listen))
        return self


def parse_listen(text: str) -> Tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError("listen {!r} is not HOST:PORT (e.g. 127.0.0.1:8090)".format(text))
    host = host.strip("[]") or "127.0.0.1"
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
