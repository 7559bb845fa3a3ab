"""Commands received on {base}/cmd/{name}: parse the request, run the named action, build the reply.

The actions themselves belong to the sink (they touch its messages); this module only knows how a
request is read and what a reply says.
"""

import json
import logging
from typing import Any, Callable, Dict, Mapping

log = logging.getLogger(__name__)

Action = Callable[[], str]  # runs the command, returns the reply's message


def run_command(name: str, payload: bytes, actions: Mapping[str, Action]) -> Dict[str, Any]:
    """Run `actions[name]` for one received command; the reply's payload (without its envelope)."""
    request_id = None
    try:
        request = json.loads(payload.decode("utf-8")) if payload else {}
        request_id = request.get("request_id") if isinstance(request, dict) else None
    except (UnicodeDecodeError, ValueError):
        request = None
    action = actions.get(name)
    if action is not None:
        ok, text = True, action()
    else:
        ok, text = False, "unknown command {!r}; known: {}".format(name, ", ".join(actions))
    log.info("telemetry: command %s: %s", name, text)
    reply: Dict[str, Any] = {"command": name, "ok": ok, "message": text}
    if isinstance(request_id, (str, int)):
        reply["request_id"] = request_id
    return reply
