"""Commands received on {base}/cmd/{name}: check and parse the request, run the named action,
build the reply.

A request is refused (ok: false, with the reason) before any action runs when it is larger than
MAX_REQUEST_BYTES, nested deeper than MAX_REQUEST_DEPTH (checked on the raw bytes, before the JSON
parser could recurse), not UTF-8, not a JSON object, or carries a field the command does not take.
Nothing a client sends can raise out of here: the telemetry thread that calls this must survive
any payload. The actions belong to the sink (they touch its messages); MQTT v5 response topics and
correlation data are the sink's too (they are delivery, not content).
"""

import json
import logging
from typing import Any, Callable, Dict, Mapping, Optional, Tuple

Handler = Callable[[Dict[str, Any]], Tuple[bool, str]]  # an extension's command (rollout): request -> (ok, text)

log = logging.getLogger(__name__)

Action = Callable[[], str]  # runs the command, returns the reply's message
MAX_REQUEST_BYTES = 4096
MAX_REQUEST_DEPTH = 4
REQUEST_FIELDS = ("request_id",)


def nesting_depth(raw: bytes, limit: int) -> int:
    """Deepest nesting of [ and { outside strings, counting stops just past `limit` (no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                return deepest
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_request(payload: bytes, fields: Optional[Tuple[str, ...]] = REQUEST_FIELDS
                  ) -> Tuple[Optional[Dict[str, Any]], str]:
    """(the request as a dict, "") or (None, why it is refused). An empty payload is an empty request.
    `fields`: the keys a request may carry (None: any, the handler checks them)."""
    if len(payload) > MAX_REQUEST_BYTES:
        return None, "payload is {} bytes; at most {} are accepted".format(len(payload), MAX_REQUEST_BYTES)
    if not payload.strip():
        return {}, ""
    if nesting_depth(payload, MAX_REQUEST_DEPTH) > MAX_REQUEST_DEPTH:
        return None, "payload is nested deeper than {} levels".format(MAX_REQUEST_DEPTH)
    try:
        request = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "payload is not UTF-8 text"
    except ValueError as exc:
        return None, "payload is not JSON ({}); send a JSON object such as {{\"request_id\": \"42\"}} or " \
                     "nothing".format(exc)
    if not isinstance(request, dict):
        return None, "payload is JSON {} but must be a JSON object".format(type(request).__name__)
    unknown = sorted(set(request) - set(fields)) if fields is not None else []
    if unknown:
        return None, "unknown field(s) {}; a request may carry: {}".format(", ".join(unknown), ", ".join(fields))
    request_id = request.get("request_id")
    if request_id is not None and (isinstance(request_id, bool) or not isinstance(request_id, (str, int))):
        return None, "request_id must be a string or an integer"
    return request, ""


def run_command(name: str, payload: bytes, actions: Mapping[str, Action],
                handlers: Mapping[str, Handler]) -> Dict[str, Any]:
    """Run `actions[name]` (built in, takes only request_id) or `handlers[name]` (an extension's,
    gets the whole request) for one received command; the reply's payload (without its envelope)."""
    action, handler = actions.get(name), handlers.get(name)
    request, refusal = parse_request(payload, REQUEST_FIELDS if handler is None else None)
    if request is None:
        ok, text = False, "refused: " + refusal
    elif action is None and handler is None:
        ok, text = False, "unknown command {!r}; known: {}".format(name, ", ".join(list(actions) + sorted(handlers)))
    else:
        try:
            ok, text = (True, action()) if action is not None else handler(request)
        except Exception as exc:  # an action's failure is the reply, never the telemetry thread's end
            log.exception("telemetry: command %s failed", name)
            ok, text = False, "failed: {}: {}".format(exc.__class__.__name__, exc)
    log.info("telemetry: command %s: %s", name, text)
    reply: Dict[str, Any] = {"command": name, "ok": ok, "message": text}
    if request and request.get("request_id") is not None:
        reply["request_id"] = request["request_id"]
    return reply
