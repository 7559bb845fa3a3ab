"""When the frame loop asks its sources, and how large a batch may be (edge_agent/batch_timing.py)."""

import pytest

from edge_agent.batch_timing import MARGIN_S, AskTiming


def _measured(infer_s=0.1, rows=8, decode_s=0.01, preprocess_s=0.002, decoders=2):
    timing = AskTiming(decoders)
    timing.batch_ended(rows, 10.0, 10.0, 10.0 + infer_s, finished_at=10.0 + infer_s)
    timing.preprocessed(rows, preprocess_s * rows)
    timing.finished(0.005)
    return timing


def test_nothing_is_timed_until_measured():
    timing = AskTiming(2)
    assert timing.ask_at(8, 1.0, 8, 0.01) is None  # ask at the take, as without timing
    assert timing.batch_limit(8, 1, 0.2, 0.01) == 8


def test_the_ask_comes_one_lead_before_the_running_batch_ends():
    timing = _measured()
    lead = 0.01 * 4 + 0.002 * 8 + MARGIN_S  # 8 frames on 2 decoders: 4 decodes in a row
    assert timing.lead_s(8, 0.01) == pytest.approx(lead)
    assert timing.ask_at(8, 50.0, 8, 0.01) == pytest.approx(50.1 - lead)


def test_decoding_as_long_as_a_batch_asks_at_the_take():
    assert _measured(infer_s=0.05).ask_at(8, 50.0, 8, 0.02) is None  # lead 0.1 s > 0.05 s batch


def test_a_wait_that_did_not_block_only_lowers_the_estimate():
    timing = AskTiming(1)
    timing.batch_ended(4, 0.0, 0.2, 0.2)  # returned at once: the batch ended at some time before 0.2
    assert timing.infer_s(4) is None
    timing.batch_ended(4, 0.0, 0.05, 0.1)  # blocked 50 ms: it ended at 0.1
    assert timing.infer_s(4) == pytest.approx(0.1)
    timing.batch_ended(4, 0.0, 0.3, 0.3)  # an upper bound above the estimate says nothing
    assert timing.infer_s(4) == pytest.approx(0.1)
    timing.batch_ended(4, 0.0, 0.06, 0.06)  # one below it lowers it
    assert timing.infer_s(4) < 0.1


def test_unmeasured_sizes_scale_from_the_nearest_measured_one():
    timing = _measured(infer_s=0.08, rows=8)
    assert timing.infer_s(4) == pytest.approx(0.04)


def test_batch_limit_keeps_the_expected_latency_within_the_target():
    timing = _measured(infer_s=0.16, rows=8, decode_s=0.01, preprocess_s=0.002)
    # rows r: max(lead, 0.02 r) + 0.02 r + 0.005 <= target
    assert timing.batch_limit(8, 1, 0.0, 0.01) == 8  # no target
    assert timing.batch_limit(8, 1, 1.0, 0.01) == 8
    assert timing.batch_limit(8, 1, 0.2, 0.01) == 4  # 0.08 + 0.08 + 0.005
    assert timing.batch_limit(8, 1, 0.01, 0.01) == 1  # never below one frame
    assert timing.batch_limit(8, 3, 0.2, 0.01) == 3  # whole frames of three tiles
