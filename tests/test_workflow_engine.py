"""Engine: dependency order, only what outputs need, caching across runs, hidden inputs, lists,
progress events, cooperative interrupt and error reporting (toy registry, no torch needed)."""

from __future__ import annotations

import math

import pytest

from latent_ops import progress
from latent_ops.workflow import Engine, ExecutionError, RunInterrupted, ValidationFailed


def make_registry(log: list) -> dict[str, type]:
    class Const:
        RETURN_TYPES = ("NUM",)
        FUNCTION = "op"
        CATEGORY = "t"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"value": ("FLOAT", {"default": 0.0})}}

        def op(self, value: float) -> tuple:
            log.append(("Const", value))
            return (value,)

    class Add:
        RETURN_TYPES = ("NUM",)
        FUNCTION = "op"
        CATEGORY = "t"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"a": ("NUM",), "b": ("NUM",)}, "optional": {"scale": ("FLOAT", {"default": 1.0})}}

        def op(self, a: float, b: float, scale: float = 1.0) -> tuple:
            log.append(("Add", a, b))
            return ((a + b) * scale,)

    class Out:
        RETURN_TYPES = ()
        FUNCTION = "op"
        OUTPUT_NODE = True
        CATEGORY = "t"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"x": ("NUM",)}, "optional": {"tag": ("STRING", {"default": ""})},
                    "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO", "unique_id": "UNIQUE_ID"}}

        def op(self, x: float, tag: str = "", prompt: dict | None = None, extra_pnginfo: dict | None = None,
               unique_id: str | None = None) -> dict:
            log.append(("Out", x, unique_id, prompt is not None, extra_pnginfo))
            return {"ui": {"values": [x]}, "result": ()}

    class Slow:
        RETURN_TYPES = ("NUM",)
        FUNCTION = "op"
        CATEGORY = "t"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"steps": ("INT", {"default": 3, "min": 1})}}

        def op(self, steps: int) -> tuple:
            for i in range(steps):
                progress.report(i + 1, steps)
            log.append(("Slow", steps))
            return (float(steps),)

    class Volatile(Const):
        @classmethod
        def IS_CHANGED(cls, value: float) -> float:
            return float("nan")

    class Versioned(Add):
        version = {"v": 1}

        @classmethod
        def IS_CHANGED(cls, scale: float) -> int:  # takes a subset of the inputs
            return cls.version["v"]

    class Fresh(Const):
        NOT_IDEMPOTENT = True

    class Broken(Const):
        def op(self, value: float) -> tuple:
            raise ZeroDivisionError("no luck")

    class TooMany(Const):
        def op(self, value: float) -> tuple:
            return (1, 2)

    class Bare(Const):
        def op(self, value: float) -> float:
            return value

    class Spread:
        RETURN_TYPES = ("NUM",)
        OUTPUT_IS_LIST = (True,)
        FUNCTION = "op"
        CATEGORY = "t"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"n": ("INT", {"default": 3})}}

        def op(self, n: int) -> tuple:
            return ([float(i) for i in range(n)],)

    class Gather:
        RETURN_TYPES = ("NUM",)
        INPUT_IS_LIST = True
        FUNCTION = "op"
        CATEGORY = "t"

        @classmethod
        def INPUT_TYPES(cls) -> dict:
            return {"required": {"x": ("NUM",)}}

        def op(self, x: list) -> tuple:
            return (sum(x),)

    return {k: v for k, v in locals().items() if isinstance(v, type)}


def chain_prompt(value: float = 1.0, tag: str = "") -> dict:
    return {
        "1": {"class_type": "Const", "inputs": {"value": value}},
        "2": {"class_type": "Const", "inputs": {"value": 10.0}},
        "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
        "4": {"class_type": "Out", "inputs": {"x": ["3", 0], "tag": tag}},
        "9": {"class_type": "Const", "inputs": {"value": 99.0}},  # feeds no output: never runs
    }


def test_runs_needed_nodes_in_dependency_order_with_hidden_inputs() -> None:
    log: list = []
    engine = Engine(make_registry(log))
    prompt = chain_prompt()
    result = engine.run(prompt, extra_pnginfo={"workflow": {"nodes": []}})
    assert log == [("Const", 1.0), ("Const", 10.0), ("Add", 1.0, 10.0), ("Out", 11.0, "4", True, {"workflow": {"nodes": []}})]
    assert result.executed == ["1", "2", "3", "4"] and result.cached == []
    assert result.outputs["3"] == (11.0,) and result.ui == {"4": {"values": [11.0]}}
    assert set(result.timings) == {"1", "2", "3", "4"} and all(t >= 0 for t in result.timings.values())


def test_constants_are_coerced_like_comfyui() -> None:
    log: list = []
    prompt = chain_prompt(value="2.5")
    Engine(make_registry(log)).run(prompt)
    assert log[0] == ("Const", 2.5)


def test_cache_reruns_only_changed_nodes_and_skips_unchanged_outputs() -> None:
    log: list = []
    engine = Engine(make_registry(log))
    engine.run(chain_prompt())
    log.clear()
    again = engine.run(chain_prompt())
    assert log == [] and again.cached == ["1", "2", "3", "4"] and again.ui == {"4": {"values": [11.0]}}
    changed = engine.run(chain_prompt(value=2.0))
    assert changed.executed == ["1", "3", "4"] and changed.cached == ["2"]
    log.clear()
    tagged = engine.run(chain_prompt(value=2.0, tag="t"))  # only the output node's own constant changed
    assert tagged.executed == ["4"] and [e[0] for e in log] == ["Out"]


def test_identical_nodes_share_one_run_unless_not_idempotent() -> None:
    log: list = []
    reg = make_registry(log)
    prompt = {"1": {"class_type": "Const", "inputs": {"value": 3.0}},
              "2": {"class_type": "Const", "inputs": {"value": 3.0}},
              "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
              "4": {"class_type": "Out", "inputs": {"x": ["3", 0]}}}
    assert Engine(reg).run(prompt).cached == ["2"]
    prompt["1"]["class_type"] = prompt["2"]["class_type"] = "Fresh"
    engine = Engine(reg)
    assert engine.run(prompt).cached == []
    assert engine.run(prompt).cached == ["1", "2", "3", "4"]  # same node ids: cached across runs


def test_is_changed_nan_always_reruns() -> None:
    log: list = []
    engine = Engine(make_registry(log))
    prompt = chain_prompt()
    prompt["1"]["class_type"] = "Volatile"
    engine.run(prompt)
    second = engine.run(prompt)
    assert second.executed == ["1", "3", "4"] and second.cached == ["2"]


def test_is_changed_value_change_reruns_the_node_and_descendants() -> None:
    log: list = []
    reg = make_registry(log)
    engine = Engine(reg)
    prompt = chain_prompt()
    prompt["3"]["class_type"] = "Versioned"
    engine.run(prompt)
    assert engine.run(prompt).executed == []
    reg["Versioned"].version["v"] = 2
    assert engine.run(prompt).executed == ["3", "4"]


def test_cache_disabled_reruns_everything() -> None:
    log: list = []
    engine = Engine(make_registry(log), cache=False)
    engine.run(chain_prompt())
    assert engine.run(chain_prompt()).executed == ["1", "2", "3", "4"]


def test_validation_failure_runs_nothing() -> None:
    log: list = []
    prompt = chain_prompt()
    del prompt["3"]["inputs"]["b"]
    with pytest.raises(ValidationFailed) as info:
        Engine(make_registry(log)).run(prompt)
    assert log == [] and [p.type for p in info.value.problems] == ["required_input_missing"]


def test_node_exception_names_node_and_keeps_cause_and_cache() -> None:
    log: list = []
    engine = Engine(make_registry(log))
    prompt = chain_prompt()
    prompt["2"]["class_type"] = "Broken"
    with pytest.raises(ExecutionError) as info:
        engine.run(prompt)
    err = info.value
    assert (err.node_id, err.class_type, err.error_type) == ("2", "Broken", "ZeroDivisionError")
    assert isinstance(err.__cause__, ZeroDivisionError) and "node 2 (Broken)" in str(err)
    prompt["2"]["class_type"] = "Const"
    assert engine.run(prompt).cached == ["1"]  # what ran before the failure stays cached


def test_wrong_number_of_outputs_is_an_execution_error() -> None:
    prompt = chain_prompt()
    prompt["2"]["class_type"] = "TooMany"
    with pytest.raises(ExecutionError, match="returned 2 value"):
        Engine(make_registry([])).run(prompt)
    prompt["2"]["class_type"] = "Bare"
    with pytest.raises(ExecutionError, match="must return a tuple"):
        Engine(make_registry([])).run(prompt)


def test_progress_events_and_cooperative_interrupt() -> None:
    log: list = []
    events: list = []
    engine = Engine(make_registry(log), callback=events.append)
    prompt = {"1": {"class_type": "Slow", "inputs": {"steps": 4}}, "2": {"class_type": "Out", "inputs": {"x": ["1", 0]}}}
    engine.run(prompt)
    steps = [(e.value, e.total) for e in events if e.kind == "progress"]
    assert steps == [(1, 4), (2, 4), (3, 4), (4, 4)]
    kinds = [(e.kind, e.node_id) for e in events if e.kind != "progress"]
    assert kinds == [("start", "1"), ("end", "1"), ("start", "2"), ("end", "2")]
    assert all(e.seconds >= 0 for e in events if e.kind == "end")

    def stop_at_two(event: object) -> None:
        if event.kind == "progress" and event.value == 2:
            engine.interrupt()

    engine.callback = stop_at_two
    log.clear()
    prompt["1"]["inputs"]["steps"] = 5
    with pytest.raises(RunInterrupted) as info:
        engine.run(prompt)
    assert info.value.node_id == "1" and log == []  # stopped inside the loop
    engine.callback = None
    assert engine.run(prompt).executed == ["1", "2"]  # the flag was consumed


def test_interrupt_before_a_run_stops_at_the_first_node() -> None:
    log: list = []
    engine = Engine(make_registry(log))
    engine.interrupt()
    with pytest.raises(RunInterrupted):
        engine.run(chain_prompt())
    assert log == []


def test_list_outputs_map_over_downstream_nodes_and_input_is_list_gathers() -> None:
    log: list = []
    reg = make_registry(log)
    prompt = {"1": {"class_type": "Spread", "inputs": {"n": 3}},
              "2": {"class_type": "Const", "inputs": {"value": 10.0}},
              "3": {"class_type": "Add", "inputs": {"a": ["1", 0], "b": ["2", 0]}},
              "4": {"class_type": "Gather", "inputs": {"x": ["3", 0]}},
              "5": {"class_type": "Out", "inputs": {"x": ["4", 0]}}}
    result = Engine(reg).run(prompt)
    assert result.outputs["3"] == ([10.0, 11.0, 12.0],)
    assert result.outputs["4"] == (33.0,)
    assert ("Out", 33.0, "5", True, None) in log


def test_long_chain_has_no_recursion_limit() -> None:
    log: list = []
    n = 3000
    prompt = {"0": {"class_type": "Const", "inputs": {"value": 1.0}}}
    for i in range(1, n):
        prompt[str(i)] = {"class_type": "Add", "inputs": {"a": [str(i - 1), 0], "b": ["0", 0]}}
    prompt["out"] = {"class_type": "Out", "inputs": {"x": [str(n - 1), 0]}}
    result = Engine(make_registry(log)).run(prompt)
    assert math.isclose(result.outputs[str(n - 1)][0], float(n))
