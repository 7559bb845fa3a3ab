"""The desired state of one rollout: what `…/desired/deployment` carries and `edge-agent deploy` writes.

A request is parsed strictly (unknown keys refused, sizes bounded) and turned into the config the
candidate is built with: the model path replaced by the downloaded file, the optional patch
(thresholds, classes, precision) applied on top of the running config.
"""

import json
import re
from typing import Any, Dict, List, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edge_agent.config import AgentConfig, ThresholdConfig
from edge_agent.engine.config import Precision
from edge_agent.errors import EdgeAgentError

MAX_PAYLOAD_BYTES = 16384
ROLLOUT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$"


class RequestError(EdgeAgentError):
    """A deployment request that cannot be acted on; the text says which field and why."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigPatch(_Strict):
    thresholds: Optional[ThresholdConfig] = Field(None, description="Replaces model.thresholds.")
    classes: Optional[List[str]] = Field(None, min_length=1, max_length=256,
                                         description="Replaces model.output.classes (one name per output channel).")
    precision: Optional[Precision] = Field(None, description="Replaces backend.precision.")


class DeploymentRequest(_Strict):
    rollout_id: str = Field(..., pattern=ROLLOUT_ID_PATTERN, description="Names this rollout in every report.")
    url: str = Field(..., min_length=1, max_length=2048,
                     description="http://, https:// or file:// URL (or an absolute path) of the ONNX model.")
    sha256: str = Field(..., pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the model file, lowercase hex.")
    size: int = Field(..., ge=1, description="Size of the model file in bytes.")
    signature: Optional[str] = Field(None, pattern=r"^[0-9a-f]{128}$",
                                     description="Ed25519 signature of the model bytes, hex (required when the "
                                                 "agent has rollout.public_key_file).")
    name: Optional[str] = Field(None, max_length=128, description="A human name of the model (for reports).")
    config: ConfigPatch = Field(ConfigPatch(), description="Settings that change with the model.")

    def candidate_config(self, running: AgentConfig, model_path: Any) -> AgentConfig:
        """The running config with this model and patch; raises RequestError when the patch is invalid."""
        data = running.model_dump(mode="json")
        data["model"]["path"] = str(model_path)
        patch = self.config
        if patch.thresholds is not None:
            data["model"]["thresholds"] = patch.thresholds.model_dump(mode="json")
        if patch.classes is not None:
            data["model"]["output"]["classes"] = list(patch.classes)
            if data["model"]["output"].get("background") not in patch.classes:
                data["model"]["output"]["background"] = None
        if patch.precision is not None:
            data["backend"]["precision"] = patch.precision
        try:
            return AgentConfig.model_validate(data)
        except ValidationError as exc:
            raise RequestError("rollout {}: the config patch does not fit this board's config: {}".format(
                self.rollout_id, _first_error(exc))) from None


def parse_request(payload: bytes) -> DeploymentRequest:
    """A validated request from JSON bytes, or RequestError naming the problem."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise RequestError("deployment request of {} bytes refused: at most {} bytes".format(
            len(payload), MAX_PAYLOAD_BYTES))
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise RequestError("deployment request is not UTF-8 JSON: {}".format(exc)) from None
    if not isinstance(data, dict):
        raise RequestError("deployment request must be a JSON object, got {}".format(type(data).__name__))
    data = {k: v for k, v in data.items() if k not in ("schema", "ts")}  # envelope fields a sender may add
    try:
        return DeploymentRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError("deployment request refused: {}".format(_first_error(exc))) from None


def request_id_of(payload: bytes) -> Optional[str]:
    """The rollout id of a payload that failed validation, when one can be read (for the report)."""
    try:
        value = json.loads(payload.decode("utf-8")).get("rollout_id")
    except (UnicodeDecodeError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) and re.match(ROLLOUT_ID_PATTERN, value) else None


def _first_error(exc: ValidationError) -> str:
    errors = exc.errors()
    parts = []
    for error in errors[:3]:
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        parts.append("{}: {}".format(where, error["msg"]))
    more = " (and {} more)".format(len(errors) - 3) if len(errors) > 3 else ""
    return "; ".join(parts) + more


def request_schema() -> Dict[str, Any]:
    """JSON Schema of the request (docs/schemas/mqtt-deploy.schema.json is generated from it)."""
    schema = DeploymentRequest.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "edge-agent desired deployment (…/desired/deployment, retained)"
    return schema
