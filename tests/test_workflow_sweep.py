"""latent_ops.workflow.sweep: --set items parsed and a workflow expanded into the prompts to run."""

from __future__ import annotations

from pathlib import Path

import pytest

from latent_ops.errors import LatentOpsError
from latent_ops.workflow import cli, load
from latent_ops.workflow import sweep as S

ROOT = Path(__file__).resolve().parents[1]
BATCH = ROOT / "workflows" / "latent_batch_basics.json"  # UI format; node 4 is titled "Small latent"


@pytest.fixture(scope="module")
def batch(registry):
    return load(BATCH, registry)


def _widgets(ui: dict, node_id: int) -> list:
    return next(n["widgets_values"] for n in ui["nodes"] if n["id"] == node_id)


def test_parse_values_ranges_lists_scalars_and_text() -> None:
    assert S.parse_values(" -2 .. 1 ") == [-2, -1, 0, 1] and S.parse_values("3..3") == [3]
    assert S.parse_values('["a", {"b": 1}]') == ["a", {"b": 1}] and S.parse_values("null") == [None]
    assert S.parse_values("1.5") == [1.5] and S.parse_values("a..b") == ["a..b"]
    assert S.parse_values("[" * 5000) == ["[" * 5000]  # too deep for JSON: taken as text
    with pytest.raises(S.UsageError, match=r"range '0\.\.10000' has more than 10000 values"):
        S.parse_values("0..10000")
    assert len(S.parse_values("0..9999")) == S.MAX_SWEEP
    with pytest.raises(S.UsageError, match=r"--set value '\[\]' is an empty list"):
        S.parse_values("[]")
    assert issubclass(S.UsageError, LatentOpsError) and issubclass(S.UsageError, ValueError)


def test_find_node_by_id_title_then_unique_class(batch) -> None:
    prompt = batch.prompt
    assert S.find_node(prompt, "5") == "5"
    assert S.find_node(prompt, "Small latent") == "4"
    assert S.find_node(prompt, "SaveLatent") == "6"
    assert S.find_node(prompt, "EmptyLatentImage") == "1"  # node 1's title is its class name; 4 is retitled
    two = {"7": {"class_type": "K", "_meta": {"title": "a"}}, "8": {"class_type": "K", "_meta": {"title": "a"}}}
    with pytest.raises(S.UsageError, match=r"'a' matches several nodes by title \(7, 8\); use a node id"):
        S.find_node(two, "a")
    with pytest.raises(S.UsageError, match=r"'K' matches several nodes by class \(7, 8\)"):
        S.find_node(two, "K")
    with pytest.raises(S.UsageError, match="no node with id, title or class 'Nope'"):
        S.find_node(prompt, "Nope")


def test_parse_sets_checks_inputs_and_the_sweep_size(batch, registry) -> None:
    sets = S.parse_sets(["Small latent.batch_size=1..3", "6.filename_prefix=x/y"], batch.prompt, registry)
    assert sets == [("4", "batch_size", [1, 2, 3]), ("6", "filename_prefix", ["x/y"])]
    # the input is after the last dot; a class the registry lacks is left to validation
    assert S.parse_sets(["a.b.c=1"], {"a.b": {"class_type": "Unknown"}}, registry) == [("a.b", "c", [1])]
    for item, needle in (("4.batch_size", "expected NODE.INPUT=VALUE"), (".x=1", "expected NODE.INPUT=VALUE"),
                         ("4.=1", "expected NODE.INPUT=VALUE"),
                         ("4.widht=8", r"node 4 \(EmptyLatentImage\) has no input 'widht'; inputs: width, height")):
        with pytest.raises(S.UsageError, match=needle):
            S.parse_sets([item], batch.prompt, registry)
    with pytest.raises(S.UsageError, match=r"the --set sweep has 10100 combinations \(limit 10000\)"):
        S.parse_sets(["1.width=0..100", "4.width=1..100"], batch.prompt, registry)


def test_expand_is_the_product_first_override_outermost(batch, registry) -> None:
    runs = S.expand(batch, ["Small latent.batch_size=[1, 2]", "6.filename_prefix=[\"a\", \"b\", \"c\"]"], registry)
    assert [r.index for r in runs] == list(range(6))
    assert [r.chosen for r in runs] == [{"4.batch_size": b, "6.filename_prefix": p} for b in (1, 2) for p in "abc"]
    for run in runs:
        assert run.prompt["4"]["inputs"]["batch_size"] == run.chosen["4.batch_size"]
        assert run.prompt["6"]["inputs"]["filename_prefix"] == run.chosen["6.filename_prefix"]
        assert _widgets(run.ui, 4)[2] == run.chosen["4.batch_size"]  # the UI workflow carries the same values
        assert _widgets(run.ui, 6) == [run.chosen["6.filename_prefix"]]
    assert runs[0].prompt is not runs[1].prompt and runs[0].prompt["1"] is not runs[1].prompt["1"]
    assert batch.prompt["4"]["inputs"]["batch_size"] == 1 and _widgets(batch.ui, 4) == [256, 256, 1]  # untouched
    (only,) = S.expand(batch, [], registry)
    assert only.prompt == batch.prompt and only.ui == batch.ui and only.chosen == {}


def test_sweep_object_counts_and_iterates_fresh_copies(batch, registry) -> None:
    runs = S.Sweep(batch, ["1.width=[64, 128]", "4.height=8..10"], registry)
    assert len(runs) == 6
    first, again = next(iter(runs)), next(iter(runs))
    first.prompt["1"]["inputs"]["width"] = -1
    assert again.prompt["1"]["inputs"]["width"] == 64 and next(iter(runs)).prompt["1"]["inputs"]["width"] == 64
    assert [r.chosen for r in S.expand(batch, ["1.width=[64, 128]", "4.height=8..10"], registry)] == [
        r.chosen for r in runs]


def test_problems_name_the_run_and_its_values(batch, registry) -> None:
    found = S.problems(S.Sweep(batch, ["1.width=[8, 64, 0]"], registry), registry)
    assert [(p["run"], p["set"], p["node_id"], p["received_value"]) for p in found] == [
        (0, {"1.width": 8}, "1", 8), (2, {"1.width": 0}, "1", 0)]
    assert all(p["type"] == "value_smaller_than_min" for p in found)
    assert S.problems(S.Sweep(batch, [], registry), registry) == []


def test_cli_keeps_the_names_it_exported() -> None:
    assert cli.parse_values is S.parse_values and cli.parse_sets is S.parse_sets and cli.sweep is S.sweep
    assert cli.UsageError is S.UsageError and cli.MAX_SWEEP == S.MAX_SWEEP == 10_000
