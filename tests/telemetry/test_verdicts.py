"""Per-part verdicts: one per inspected frame as telemetry.verdicts says, naming the image file
for folder sources, and the inspected/NG counters that give the reject rate from metrics alone."""

import cv2
import jsonschema
import numpy as np
import pytest

from .telemetry_helpers import InProcessAgent, agent_config, load_schema


def _folder(tmp_path, count, dark_every):
    folder = tmp_path / "parts"
    folder.mkdir()
    for index in range(count):
        image = np.full((120, 160, 3), 200, np.uint8)
        if index % dark_every == 0:
            image[40:80, 60:100] = 10  # a dark square: NG for the dark-spot model
        cv2.imwrite(str(folder / "part-{:03d}.png".format(index)), image)
    return folder


@pytest.mark.parametrize("policy", ["all", "ng", "none"])
def test_verdicts_follow_the_policy_and_name_the_file(tmp_path, broker, collector_factory, policy):
    collector = collector_factory(broker.port)
    data = agent_config(tmp_path, broker.port, interval=0.2)
    data["telemetry"] = {"verdicts": policy}
    data["sources"] = [{"type": "folder", "name": "line_a", "path": str(_folder(tmp_path, 12, 3))}]
    with InProcessAgent(data) as agent:
        collector.wait_for(lambda c: c.json("/metrics") and c.json("/metrics")[-1]["frames_processed_total"] == 12,
                           timeout=60, what="the folder inspected")
        agent.telemetry.close()  # flush: every verdict out
    verdicts = collector.json("/events/verdict")
    validator = jsonschema.Draft202012Validator(load_schema("verdict"))
    for verdict in verdicts:
        validator.validate(verdict)
    expected = {"all": 12, "ng": 4, "none": 0}[policy]
    assert len(verdicts) == expected
    if policy == "all":
        by_file = {v["file"]: v["verdict"] for v in verdicts}
        assert by_file == {"part-{:03d}.png".format(i): "NG" if i % 3 == 0 else "OK" for i in range(12)}
    metrics = collector.json("/metrics")[-1]
    row = metrics["by_source"][0]
    assert (row["source"], row["frames_processed_total"], row["frames_ng_total"]) == ("line_a", 12, 4)
