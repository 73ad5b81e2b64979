"""Validation of broken and hostile API prompts: every ComfyUI error type, all reported at once."""

from __future__ import annotations

import pytest

from latent_ops.workflow import validate


class Source:
    RETURN_TYPES = ("LATENT", "INT", "FLOAT,INT", "*")
    FUNCTION = "op"
    CATEGORY = "t"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"size": ("INT", {"default": 8, "min": 1, "max": 64})}}

    def op(self, size: int) -> tuple:
        return ({}, size, float(size), None)


class Sink:
    RETURN_TYPES = ()
    FUNCTION = "op"
    OUTPUT_NODE = True
    CATEGORY = "t"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "samples": ("LATENT",),
            "strength": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0}),
            "mode": (["a", "b"],),
            "label": ("STRING", {"default": ""}),
            "flag": ("BOOLEAN", {"default": False}),
        }, "optional": {"count": ("INT", {"default": 1, "min": 0, "max": 10}), "anything": ("*",)}}

    def op(self, samples: dict, strength: float, mode: str, label: str, flag: bool, count: int = 1,
           anything: object = None) -> tuple:
        return ()


class Picky:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "t"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"name": (["x"],), "n": ("INT", {"default": 0, "min": 0, "max": 1})}}

    @classmethod
    def VALIDATE_INPUTS(cls, name: str) -> bool | str:
        if name == "boom":
            raise RuntimeError("kaput")
        return True if name.endswith(".ok") else f"no such file {name!r}"

    def op(self, name: str, n: int) -> tuple:
        return ({},)


REG = {"Source": Source, "Sink": Sink, "Picky": Picky}


def sink(**inputs: object) -> dict:
    base = {"samples": ["1", 0], "strength": 0.5, "mode": "a", "label": "x", "flag": True}
    base.update(inputs)
    return {"class_type": "Sink", "inputs": {k: v for k, v in base.items() if v is not DROP}}


DROP = object()
SRC = {"class_type": "Source", "inputs": {"size": 8}}


def types(prompt: dict) -> list[str]:
    return [p.type for p in validate(prompt, REG)]


def test_valid_prompt_has_no_problems_and_coerces_like_comfyui() -> None:
    assert validate({"1": SRC, "2": sink()}, REG) == []
    # "0.25" -> float, 1 -> float, "3" -> int: ComfyUI coerces constants with float()/int()
    assert validate({"1": SRC, "2": sink(strength="0.25", count="3")}, REG) == []
    assert validate({"1": SRC, "2": sink(strength=1)}, REG) == []
    # comma unions and "*" link to matching types
    assert validate({"1": SRC, "2": sink(count=["1", 2], anything=["1", 0])}, REG) == []
    assert validate({"1": SRC, "2": sink(samples=["1", 3])}, REG) == []


@pytest.mark.parametrize(("inputs", "expected", "name"), [
    ({"samples": DROP}, "required_input_missing", "samples"),
    ({"samples": ["1", 0, 0]}, "bad_linked_input", "samples"),
    ({"samples": [1.5, 0]}, "bad_linked_input", "samples"),
    ({"samples": ["1", "0"]}, "bad_linked_input", "samples"),
    ({"samples": ["9", 0]}, "dangling_link", "samples"),
    ({"samples": ["1", 7]}, "dangling_link", "samples"),
    ({"samples": ["1", 1]}, "return_type_mismatch", "samples"),
    ({"samples": {"samples": 1}}, "invalid_input_type", "samples"),
    ({"strength": "abc"}, "invalid_input_type", "strength"),
    ({"strength": float("inf")}, "invalid_input_type", "strength"),
    ({"strength": [1, 2, 3]}, "bad_linked_input", "strength"),
    ({"label": {"a": 1}}, "invalid_input_type", "label"),
    ({"strength": -0.5}, "value_smaller_than_min", "strength"),
    ({"strength": 1e300}, "value_bigger_than_max", "strength"),
    ({"strength": 10**400}, "invalid_input_type", "strength"),
    ({"count": 10**400}, "value_bigger_than_max", "count"),
    ({"mode": "c"}, "value_not_in_list", "mode"),
    ({"mode": ["1", 0]}, "return_type_mismatch", "mode"),
])
def test_each_error_type_names_node_class_input_and_value(inputs: dict, expected: str, name: str) -> None:
    problems = validate({"1": SRC, "2": sink(**inputs)}, REG)
    assert [p.type for p in problems] == [expected], problems
    problem = problems[0]
    assert (problem.node_id, problem.class_type, problem.input_name) == ("2", "Sink", name)
    assert "node 2 (Sink)" in problem.message and repr(name) in problem.message
    if expected != "required_input_missing":
        assert problem.received_value is not None
    assert isinstance(problem.to_dict()["message"], str)


def test_every_problem_is_reported_at_once() -> None:
    prompt = {"1": SRC, "2": sink(samples=DROP, strength=3.0, mode="z", count=-1),
              "3": {"class_type": "Nope", "inputs": {}}, "4": "not a node"}
    problems = validate(prompt, REG)
    assert sorted(p.type for p in problems) == sorted([
        "invalid_prompt", "missing_node_type", "required_input_missing", "value_bigger_than_max",
        "value_not_in_list", "value_smaller_than_min"])
    assert {p.node_id for p in problems} == {"2", "3", "4"}


def test_no_output_node() -> None:
    assert types({"1": SRC}) == ["prompt_no_outputs"]


def test_cycle_is_reported_with_its_nodes() -> None:
    prompt = {"1": {"class_type": "Picky", "inputs": {"name": "a.ok", "n": ["2", 1]}},
              "2": {"class_type": "Source", "inputs": {"size": ["3", 1]}},
              "3": {"class_type": "Source", "inputs": {"size": ["2", 1]}},
              "4": sink(samples=["1", 0])}
    problems = validate(prompt, REG)
    assert [p.type for p in problems] == ["dependency_cycle"]
    assert "2 (Source)" in problems[0].message and "3 (Source)" in problems[0].message


def test_self_link_is_a_cycle() -> None:
    prompt = {"1": {"class_type": "Source", "inputs": {"size": ["1", 1]}}, "2": sink(count=["1", 1])}
    assert types(prompt) == ["dependency_cycle"]


def test_custom_validation_replaces_the_builtin_combo_check() -> None:
    ok = {"1": {"class_type": "Picky", "inputs": {"name": "sub/file.ok", "n": 0}}, "2": sink()}
    assert validate(ok, REG) == []
    bad = {"1": {"class_type": "Picky", "inputs": {"name": "../x", "n": 5}}, "2": sink()}
    assert sorted(types(bad)) == ["custom_validation_failed", "value_bigger_than_max"]
    boom = {"1": {"class_type": "Picky", "inputs": {"name": "boom", "n": 0}}, "2": sink()}
    assert types(boom) == ["exception_during_validation"]


def test_only_output_ancestors_are_checked_but_every_class_must_exist() -> None:
    prompt = {"1": SRC, "2": sink(), "3": {"class_type": "Source", "inputs": {"size": 999}}}
    assert validate(prompt, REG) == []  # node 3 feeds no output: ComfyUI ignores it too
    prompt["4"] = {"class_type": "Ghost", "inputs": {}}
    assert types(prompt) == ["missing_node_type"]


@pytest.mark.parametrize("hostile", [None, [], {}, [1, 2], "text", {"1": None}, {"1": {"class_type": 5, "inputs": {}}},
                                     {"1": {"class_type": "Sink", "inputs": []}}])
def test_hostile_structures(hostile: object) -> None:
    problems = validate(hostile, REG)
    assert problems and all(p.type in ("invalid_prompt", "prompt_no_outputs") for p in problems)


def test_huge_and_deep_values_are_shortened_in_messages() -> None:
    deep: list = []
    for _ in range(50):
        deep = [deep, deep, 0]
    problems = validate({"1": SRC, "2": sink(label="y" * 100000, strength={"x": deep})}, REG)
    assert types({"1": SRC, "2": sink(label="y" * 100000)}) == []
    assert all(len(p.message) < 400 for p in problems)
