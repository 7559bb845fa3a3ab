"""Bad rollouts to a running agent (subprocess, real mosquitto, loopback HTTP, signatures required):
a wrong SHA-256, an unsigned model, a corrupt model, then a good one, `cmd/rollback`, and a model
that crashes at run time after passing its gate: each is rejected or rolled back and a model keeps
inspecting throughout."""

import json
import time

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion
from telemetry.conftest import broker, collector_factory  # noqa: F401

from .model_server import ModelServer
from .rollout_models import corrupt_model
from .test_fleet_rollout import (
    BASE,
    Agent,
    agent_yaml,
    assert_contiguous,
    models,  # noqa: F401
    publish_desired,
    request_for,
    segments,
    sha256,
    wait_report,
)
from .test_signature import fleet_keys


def send_command(port, name, payload):
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="operator", protocol=mqtt.MQTTv5)
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.publish(BASE + "/cmd/" + name, json.dumps(payload), qos=1).wait_for_publish(10)
    client.disconnect()
    client.loop_stop()


@pytest.fixture
def signer(tmp_path):
    private, public, _ = fleet_keys(tmp_path)
    return public, lambda path: private.sign(path.read_bytes()).hex()


def test_bad_models_are_rejected_or_rolled_back_while_a_model_keeps_serving(
        tmp_path, broker, collector_factory, models, signer):  # noqa: F811
    public_key, sign = signer
    corrupt = corrupt_model(models["folder"] / "corrupt.onnx")
    crashing = models["crashing"]
    config = agent_yaml(tmp_path, models, broker.port, public_key_file=str(public_key))
    collector = collector_factory(broker.port, topic=BASE + "/#")
    old_sha, good = sha256(models["old"]), models["good"]
    with ModelServer(models["folder"]) as server:
        agent = Agent(tmp_path, config, env={"EA_TEST_CRASH_MODEL": sha256(crashing)[:16]})
        try:
            agent.wait_frames(50)
            # wrong SHA-256: refused before anything is built
            publish_desired(broker.port, dict(request_for(server, good, "r-sha"), sha256="ab" * 32,
                                              signature=sign(good)))
            report = wait_report(collector, "r-sha")[-1]
            assert report["state"] == "rejected" and "SHA-256 is {}".format(sha256(good)) in report["reason"]
            # unsigned: a broker account alone cannot push a model
            publish_desired(broker.port, request_for(server, good, "r-unsigned"))
            report = wait_report(collector, "r-unsigned")[-1]
            assert report["state"] == "rejected" and "no signature" in report["reason"]
            # corrupt bytes with the right hash and signature: the build child refuses it
            publish_desired(broker.port, request_for(server, corrupt, "r-corrupt", signature=sign(corrupt)))
            report = wait_report(collector, "r-corrupt")[-1]
            assert report["state"] == "rejected" and "corrupt" in report["reason"].lower(), report
            assert report["serving_sha256"] == old_sha
            assert segments(agent.frames()) == ["old.onnx"]

            # a good signed model, then an operator's rollback: the old model is back between two batches
            publish_desired(broker.port, request_for(server, good, "r-good", signature=sign(good)))
            assert wait_report(collector, "r-good")[-1]["state"] == "active"
            send_command(broker.port, "rollback", {"request_id": "op-1", "reason": "operator says so"})
            collector.wait_for(lambda c: any(r.get("request_id") == "op-1" and r["ok"]
                                             for r in c.json("/reply/rollback")), 20, "the rollback reply")
            report = wait_report(collector, "r-good", states=("rolled-back",))[-1]
            assert report["reason"] == "operator says so" and report["rolled_back_to"] == old_sha
            assert report["serving_sha256"] == old_sha
            agent.wait_frames(len(agent.frames()) + 30)
            frames = agent.frames()
            assert_contiguous(frames)
            assert segments(frames) == ["old.onnx", sha256(good) + ".onnx", "old.onnx"]

            # a model that passes its gate and crashes at run time: rolled back automatically
            publish_desired(broker.port, request_for(server, crashing, "r-crash", signature=sign(crashing)))
            states = [r["state"] for r in wait_report(collector, "r-crash", states=("rolled-back",))]
            assert states[-2:] == ["active", "rolled-back"], states
            report = wait_report(collector, "r-crash", states=("rolled-back",))[-1]
            assert "crashed" in report["reason"] and report["rolled_back_to"] == old_sha
            crash_name = sha256(crashing) + ".onnx"
            deadline = time.monotonic() + 60
            while True:  # the agent restarted its pipeline and inspects with the old model again
                frames = agent.frames()  # (the crashed pipeline's log lines are flushed at its teardown)
                last_crash = max([i for i, (_, m) in enumerate(frames) if m == crash_name], default=len(frames))
                if len(frames) - last_crash > 30:
                    break
                assert time.monotonic() < deadline and agent.process.poll() is None, agent.log()
                time.sleep(0.2)
            assert segments(frames[last_crash + 1:]) == ["old.onnx"]
            assert "injected inference failure" in agent.log()
        finally:
            code = agent.stop()
        assert code == 0, agent.log()
    status = yaml.safe_load((tmp_path / "state" / "deployment.json").read_text())
    assert status["active"] is None  # the configured model serves again
    assert {k["sha256"] for k in status["kept"]} == {sha256(good), sha256(crashing)}
