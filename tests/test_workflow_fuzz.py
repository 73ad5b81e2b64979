"""Fuzzing the workflow loader and validator with Hypothesis: random JSON, random API prompts and
UI graphs built from the real registry's node types and input names, and random PNG text chunks
never give anything but a :class:`WorkflowError` (or :class:`FileAccessError` for PNG bytes) or
a result; validating any loaded prompt returns problems and never raises. Example counts are
bounded so the whole file runs in well under 30 s.
"""

from __future__ import annotations

import json
import tempfile
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latent_ops.media import png
from latent_ops.workflow import WorkflowError, from_data, load, validate
from latent_ops.workflow.formats import MAX_DEPTH, check_depth

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)


@pytest.fixture(scope="module")
def kinds(registry) -> list[str]:
    return sorted(registry)


def node_ids() -> st.SearchStrategy:
    return st.integers(0, 12).map(str) | st.sampled_from(["²", "٣", "x", "", "01", "9" * 25])


def api_prompts(kinds: list[str], registry: dict) -> st.SearchStrategy:
    names = sorted({n for k in kinds for section in ("required", "optional")
                    for n in (registry[k].INPUT_TYPES().get(section) or {})})
    links = st.lists(node_ids() | st.integers(-1, 12) | scalars, min_size=2, max_size=2) | st.tuples(node_ids(), st.integers(-1, 3)).map(list)
    inputs = st.dictionaries(st.sampled_from(names) | st.text(max_size=6), links | json_values, max_size=6)
    node = st.fixed_dictionaries({"class_type": st.sampled_from(kinds) | st.text(max_size=8), "inputs": inputs})
    return st.dictionaries(node_ids(), node | json_values, min_size=1, max_size=6)


def ui_graphs(kinds: list[str]) -> st.SearchStrategy:
    kind = st.sampled_from([*kinds, "Reroute", "PrimitiveNode", "Note"]) | st.text(max_size=8)  # mostly real types
    slot = st.fixed_dictionaries({"name": st.text(max_size=8) | st.sampled_from(["samples", "images", "vae"]),
                                  "type": st.sampled_from(["LATENT", "IMAGE", "VAE", "*"]),
                                  "link": st.none() | st.integers(0, 9) | scalars})
    node = st.fixed_dictionaries(
        {"id": st.integers(0, 15) | st.sampled_from(["²", "x"]), "type": kind,
         "mode": st.sampled_from([0, 2, 4]) | st.integers(), "inputs": st.lists(slot, max_size=3),
         "outputs": st.lists(st.fixed_dictionaries({"type": st.just("LATENT")}), max_size=2),
         "widgets_values": st.lists(scalars, max_size=5) | json_values},
        optional={"title": st.text(max_size=10), "properties": json_values})
    link = st.tuples(st.integers(0, 9), st.integers(0, 9) | st.text(max_size=2), st.integers(-1, 3), st.integers(0, 9),
                     st.integers(0, 3), st.sampled_from(["LATENT", "IMAGE"])).map(list)
    nodes = st.lists(node, max_size=6, unique_by=lambda n: str(n["id"])) | st.lists(node | json_values, max_size=3)
    links = st.lists(link, max_size=6) | st.lists(link | json_values, max_size=2)  # mostly well-formed
    return st.fixed_dictionaries({"nodes": nodes, "links": links},
                                 optional={"extra": json_values, "definitions": json_values})


def loads_cleanly(data: object, registry: dict) -> None:
    """Loading raises only WorkflowError; a loaded prompt validates to a list of problems."""
    try:
        workflow = from_data(data, registry)
    except WorkflowError:
        return
    problems = validate(workflow.prompt, registry)
    assert isinstance(problems, list)
    assert all(len(p.message) <= 2100 and isinstance(p.to_dict(), dict) for p in problems)
    json.dumps([p.to_dict() for p in problems])


@FUZZ
@given(data=json_values)
def test_any_json_value_loads_or_is_refused(registry, data) -> None:
    loads_cleanly(data, registry)


@FUZZ
@given(data=st.data())
def test_random_api_prompts_validate_without_raising(registry, kinds, data) -> None:
    loads_cleanly(data.draw(api_prompts(kinds, registry)), registry)


@FUZZ
@given(data=st.data())
def test_random_ui_graphs_convert_or_are_refused(registry, kinds, data) -> None:
    loads_cleanly(data.draw(ui_graphs(kinds)), registry)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


text_chunks = st.tuples(
    st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"IHDR", b"IDAT", b"IEND"]) | st.binary(min_size=4, max_size=4),
    st.sampled_from([b"prompt", b"workflow", b"other", b""]),
    st.binary(max_size=3),
    st.sampled_from([b"{}", b'{"1": {"class_type": "SaveLatent", "inputs": {}}}', b'{"nodes": [], "links": []}',
                     b"[[[[", b"\xff\xfe"]) | st.binary(max_size=40),
    st.booleans(),
)


def build_png(parts: list[tuple[bytes, bytes, bytes, bytes, bool]], cut: int | None) -> bytes:
    out = png.PNG_SIGNATURE
    for kind, key, flags, payload, squeeze in parts:
        out += png_chunk(kind, key + b"\0" + flags + (zlib.compress(payload) if squeeze else payload))
    return out[:cut] if cut is not None else out


@FUZZ
@given(parts=st.lists(text_chunks, max_size=6), cut=st.none() | st.integers(0, 200))
def test_random_png_text_chunks_read_or_are_refused(registry, parts, cut) -> None:
    data = build_png(parts, cut)
    try:
        png.read_png_text(data, budget=256)
    except png.FileAccessError:
        pass
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "w.png"
        path.write_bytes(data)
        try:
            workflow = load(path, registry)
        except WorkflowError:
            return
        assert isinstance(validate(workflow.prompt, registry), list)


@settings(max_examples=60, deadline=None)
@given(depth=st.integers(0, 3 * MAX_DEPTH), wrap=st.sampled_from(["list", "dict"]))
def test_nesting_is_refused_exactly_beyond_the_limit(depth, wrap) -> None:
    value: object = 0
    for _ in range(depth):
        value = [value] if wrap == "list" else {"k": value}
    if depth <= MAX_DEPTH:
        check_depth(value)
    else:
        with pytest.raises(WorkflowError, match=f"nested more than {MAX_DEPTH} levels deep"):
            check_depth(value)
