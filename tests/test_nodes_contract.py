"""Every registered node honours ComfyUI's V1 class contract.

Checked for our nodes and the headless core stand-ins alike: ``INPUT_TYPES`` matches the method
signature, widget defaults lie within their bounds, return metadata is consistent, and our IDs
carry the ``LatentOps`` prefix with a display name.
"""

from __future__ import annotations

import inspect

import latent_ops_nodes
import pytest

WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN"}


def _all_nodes() -> list[tuple[str, type]]:
    return sorted(latent_ops_nodes.headless_registry().items())


@pytest.mark.parametrize(("node_id", "cls"), _all_nodes(), ids=[n for n, _ in _all_nodes()])
def test_input_types_match_signature(node_id: str, cls: type) -> None:
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}, node_id
    required = dict(spec.get("required", {}))
    optional = dict(spec.get("optional", {}))
    hidden = dict(spec.get("hidden", {}))
    method = getattr(cls, cls.FUNCTION)
    params = dict(inspect.signature(method).parameters)
    params.pop("self", None)
    params.pop("cls", None)
    assert not any(p.kind is p.VAR_KEYWORD for p in params.values()), f"{node_id}: **kwargs hides the contract"
    assert set(params) == set(required) | set(optional) | set(hidden), node_id
    for name in set(optional) | set(hidden):
        assert params[name].default is not inspect.Parameter.empty, f"{node_id}.{name} needs a default"


@pytest.mark.parametrize(("node_id", "cls"), _all_nodes(), ids=[n for n, _ in _all_nodes()])
def test_widget_defaults_are_valid(node_id: str, cls: type) -> None:
    spec = cls.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind = entry[0]
            opts = entry[1] if len(entry) > 1 else {}
            if isinstance(kind, list):
                assert kind, f"{node_id}.{name}: empty combo"
                if "default" in opts:
                    assert opts["default"] in kind, f"{node_id}.{name}"
            elif kind in WIDGETS and "default" in opts:
                lo, hi = opts.get("min"), opts.get("max")
                if lo is not None:
                    assert opts["default"] >= lo, f"{node_id}.{name}"
                if hi is not None:
                    assert opts["default"] <= hi, f"{node_id}.{name}"


@pytest.mark.parametrize(("node_id", "cls"), _all_nodes(), ids=[n for n, _ in _all_nodes()])
def test_return_metadata(node_id: str, cls: type) -> None:
    assert isinstance(cls.RETURN_TYPES, tuple), node_id
    names = getattr(cls, "RETURN_NAMES", None)
    if names is not None:
        assert isinstance(names, tuple) and len(names) == len(cls.RETURN_TYPES), node_id
    assert isinstance(cls.FUNCTION, str) and callable(getattr(cls, cls.FUNCTION)), node_id
    assert isinstance(cls.CATEGORY, str) and cls.CATEGORY, node_id


def test_our_ids_are_prefixed_and_named() -> None:
    ours = latent_ops_nodes.NODE_CLASS_MAPPINGS
    for node_id, cls in ours.items():
        assert node_id.startswith("LatentOps"), node_id
        assert latent_ops_nodes.NODE_DISPLAY_NAME_MAPPINGS.get(node_id), node_id
        assert cls.CATEGORY.startswith("latent_ops"), node_id
        assert getattr(cls, "DESCRIPTION", ""), f"{node_id} needs a DESCRIPTION"
    assert set(latent_ops_nodes.NODE_DISPLAY_NAME_MAPPINGS) == set(ours)
