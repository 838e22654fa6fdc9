"""The planner (`megamed.training.planner`, behind tools/plan.py) against a real step at
TP2 x PP2 x DP2 with ZeRO 0-2 (ZeRO-3 is refused with PP), tiny and demo profiles: every
memory component of every rank within 10% (tests/plan_runs.py). The TP2 x DP2 runs (ZeRO
0-3) share the 4-process launch of tests/parallel/test_sequence_parallel.py."""
import pytest

from distributed import run_distributed
from plan_runs import PROFILES, assert_plan_within_tolerance, plan_runs


@pytest.fixture(scope="module")
def tp2_pp2_dp2():
    return run_distributed(plan_runs, 8, 2, 2, (0, 1, 2))[0]


def test_plan_matches_tp2_pp2_dp2(tp2_pp2_dp2):
    assert set(tp2_pp2_dp2) == {(p, z) for p in PROFILES for z in (0, 1, 2)}
    assert_plan_within_tolerance(tp2_pp2_dp2)
