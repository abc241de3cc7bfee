"""The benchmark runner's workload selection and its per-process result round trip (no JAX work)."""

from __future__ import annotations

import dataclasses

from benchmarks.__main__ import select
from benchmarks.common import Result

WL = [("bench_train", "train imnet-ae"), ("bench_sif", "train ldif"), ("bench_extract", "extract imnet-ae"),
      ("bench_extract", "extract ldif-like"), ("bench_sif", "sif eval")]


def test_only_prefers_exact_name_then_module_then_substring():
    assert select(WL, None) == WL
    # exact workload name: not every name that contains it
    assert select(WL, ["extract imnet-ae"]) == [WL[2]]
    # module name (with or without the bench_ prefix) beats a substring match
    assert select(WL, ["sif"]) == [WL[1], WL[4]]
    assert select(WL, ["bench_extract"]) == [WL[2], WL[3]]
    # otherwise substring, in table order, without duplicates
    assert select(WL, ["imnet-ae", "extract"]) == [WL[0], WL[2], WL[3]]
    assert select(WL, ["nothing"]) == []


def test_result_survives_the_worker_json_round_trip():
    import json

    r = Result("x", 2.0, "points", 0.5, flops=1e9, steady_compiles=1, peak_rss_mib=300.0, extra={"a": 1})
    back = Result(**json.loads(json.dumps(dataclasses.asdict(r))))
    assert back == r and back.gflops() == 2.0
