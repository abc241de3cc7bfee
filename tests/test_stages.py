import pytest

from impax.stages import Stage, StageRunner


def test_finished_stages_are_reused_and_interrupted_stage_reruns(tmp_path):
    calls = []

    def ok(name):
        def f():
            calls.append(name)
            return {"value": name}
        return f

    def boom():
        calls.append("b")
        raise KeyboardInterrupt  # the user pressed ^C during stage b

    with pytest.raises(KeyboardInterrupt):
        StageRunner(tmp_path, log=lambda s: None).run([Stage("a", ok("a")), Stage("b", boom), Stage("c", ok("c"))])
    assert calls == ["a", "b"]
    runner = StageRunner(tmp_path, log=lambda s: None)
    out = runner.run([Stage("a", ok("a")), Stage("b", ok("b")), Stage("c", ok("c"))])
    assert calls == ["a", "b", "b", "c"]  # a reused, b re-run, c run
    assert runner.reused == ["a"]
    assert out["a"]["value"] == "a" and out["c"]["value"] == "c"


def test_changed_key_invalidates(tmp_path):
    calls = []
    r = StageRunner(tmp_path, log=lambda s: None)
    r.run([Stage("a", lambda: calls.append(1), key="v1")])
    StageRunner(tmp_path, log=lambda s: None).run([Stage("a", lambda: calls.append(2), key="v1")])
    StageRunner(tmp_path, log=lambda s: None).run([Stage("a", lambda: calls.append(3), key="v2")])
    assert calls == [1, 3]
