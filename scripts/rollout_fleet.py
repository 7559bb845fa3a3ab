#!/usr/bin/env python3
"""Roll a model out to every board under a site/line and wait for their reports (docs/fleet.md).

    python scripts/rollout_fleet.py --broker localhost --site plant-a --line line-2 \\
        --url https://models.plant/defect-v8.onnx --file defect-v8.onnx --rollout-id v8

Boards are found by their retained `birth` messages; each gets a retained desired state on
`{root}/v1/{site}/{line}/{device}/desired/deployment`; the script then prints every board's
`deployment` reports until each is active, rejected or rolled back (or --timeout passes), and
exits 0 only when every board is active. Needs paho-mqtt (an edge-agent dependency) only.
"""

import argparse
import hashlib
import json
import sys
import threading
import time
from pathlib import Path

TERMINAL = ("active", "rejected", "rolled-back")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--broker", default="localhost", help="MQTT broker host (localhost)")
    parser.add_argument("--port", type=int, default=1883, help="MQTT broker port (1883)")
    parser.add_argument("--root", default="edge-agent", help="mqtt.topic_root of the boards (edge-agent)")
    parser.add_argument("--site", required=True, help="device.site of the boards")
    parser.add_argument("--line", default="+", help="device.line of the boards (default: every line of the site)")
    parser.add_argument("--url", required=True, help="where the boards download the model (http/https)")
    parser.add_argument("--file", required=True, help="the same model here: its SHA-256 and size go in the request")
    parser.add_argument("--rollout-id", required=True, help="names this rollout in every report")
    parser.add_argument("--precision", choices=["fp32", "fp16", "int8"], help="serve at this precision")
    parser.add_argument("--signature", help="Ed25519 signature of the model, hex (boards with a public key need it)")
    parser.add_argument("--discover-s", type=float, default=3.0, help="seconds to collect birth messages (3)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for every report (3600)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    data = Path(args.file).read_bytes()
    request = {"rollout_id": args.rollout_id, "url": args.url, "sha256": hashlib.sha256(data).hexdigest(),
               "size": len(data), "name": Path(args.file).name}
    if args.precision:
        request["config"] = {"precision": args.precision}
    if args.signature:
        request["signature"] = args.signature
    prefix = "{}/v1/{}/{}/".format(args.root, args.site, args.line)
    boards, states, lock = set(), {}, threading.Lock()

    def on_message(_client, _userdata, message):
        parts = message.topic.split("/")
        if len(parts) != 6 or not message.payload:
            return
        board = "/".join(parts[3:5])  # line/device
        payload = json.loads(message.payload)
        with lock:
            if parts[5] == "birth":
                boards.add(board)
            elif parts[5] == "deployment" and payload.get("rollout_id") == args.rollout_id:
                if states.get(board, {}).get("state") != payload.get("state") or payload.get("state") in (
                        "downloading", "preparing"):
                    print("{:<24} {:<12} {}".format(board, payload["state"], _summary(payload)), flush=True)
                states[board] = payload

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="rollout-{}".format(args.rollout_id),
                         protocol=mqtt.MQTTv5)
    client.on_message = on_message
    client.connect(args.broker, args.port)
    client.subscribe([(prefix + "+/birth", 1), (prefix + "+/deployment", 1)])
    client.loop_start()
    time.sleep(args.discover_s)
    with lock:
        targets = sorted(boards)
    if not targets:
        print("no board under {} has published a birth message".format(prefix + "+"), file=sys.stderr)
        return 2
    print("rolling {} ({}) out to {} board(s): {}".format(args.rollout_id, request["sha256"][:12], len(targets),
                                                          ", ".join(targets)), flush=True)
    for board in targets:
        topic = "{}/v1/{}/{}/desired/deployment".format(args.root, args.site, board)
        client.publish(topic, json.dumps(request), qos=1, retain=True).wait_for_publish(30)
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        with lock:
            done = {b: states[b]["state"] for b in targets if states.get(b, {}).get("state") in TERMINAL}
        if len(done) == len(targets):
            break
        time.sleep(0.5)
    client.disconnect()
    client.loop_stop()
    with lock:
        final = {b: states.get(b, {}).get("state", "no report") for b in targets}
    active = sum(1 for s in final.values() if s == "active")
    print("{} of {} board(s) active: {}".format(active, len(targets), json.dumps(final)))
    return 0 if active == len(targets) else 1


def _summary(report):
    if report.get("progress_pct") is not None:
        return "{:.0f} %".format(report["progress_pct"])
    if report.get("reason"):
        return report["reason"]
    if report.get("state") == "active":
        return "serving {}".format(report.get("model_sha256", "")[:12])
    return ""


if __name__ == "__main__":
    sys.exit(main())
