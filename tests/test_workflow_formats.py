"""UI <-> API conversion against hand-written expectations from the editor's graphToPrompt rules."""

from __future__ import annotations

import copy
import json

import pytest

from latent_ops.media import files
from latent_ops.workflow import WorkflowError, api_to_ui, from_data, load, set_ui_widget, ui_to_api, validate


class LatentMultiply:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples": ("LATENT",),
                             "multiplier": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01})}}

    def op(self, samples: dict, multiplier: float) -> tuple:
        return ({"samples": samples["samples"] * multiplier},)


class Sampler:
    """KSampler's widget layout: seed (+ control value), steps, cfg, two combos, denoise."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "sampling"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "model": ("MODEL",),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**64 - 1}),
            "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
            "cfg": ("FLOAT", {"default": 8.0, "min": 0.0, "max": 100.0}),
            "sampler_name": (["euler", "heun"],),
            "scheduler": (["normal", "karras"],),
            "latent_image": ("LATENT",),
            "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0}),
        }, "optional": {
            "count": ("INT", {"default": 3, "forceInput": True}),
            "jitter": ("INT", {"default": 0, "control_after_generate": True}),
            "note": ("STRING", {"default": "hi"}),
        }}

    def op(self, model: object, seed: int, steps: int, cfg: float, sampler_name: str, scheduler: str,
           latent_image: dict, denoise: float, count: int = 3, jitter: int = 0, note: str = "hi") -> tuple:
        return (latent_image,)


class Loader:
    RETURN_TYPES = ("MODEL", "INT")
    FUNCTION = "op"
    CATEGORY = "loaders"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"ckpt_name": (["a.safetensors", "b.safetensors"],)}}

    def op(self, ckpt_name: str) -> tuple:
        return (ckpt_name, 7)


class Empty:
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"width": ("INT", {"default": 512, "min": 16, "max": 16384, "step": 8}),
                             "height": ("INT", {"default": 512, "min": 16, "max": 16384, "step": 8}),
                             "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096})}}

    def op(self, width: int, height: int, batch_size: int) -> tuple:
        return ({},)


class SaveLatent:
    RETURN_TYPES = ()
    FUNCTION = "op"
    OUTPUT_NODE = True
    CATEGORY = "_for_testing"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"samples": ("LATENT",), "filename_prefix": ("STRING", {"default": "latents/ComfyUI"})}}

    def op(self, samples: dict, filename_prefix: str) -> tuple:
        return ()


class Upload:
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "op"
    CATEGORY = "image"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": (["example.png", "b.png"], {"image_upload": True}),
                             "gain": ("FLOAT", {"default": 1.0})}}

    def op(self, image: str, gain: float) -> tuple:
        return (image,)


REG = {"LatentMultiply": LatentMultiply, "Sampler": Sampler, "Loader": Loader, "EmptyLatentImage": Empty,
       "SaveLatent": SaveLatent, "Upload": Upload}

# The two minimal examples of the reference (comfyui.md §d), verbatim.
MINIMAL_API = {
    "1": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
    "2": {"class_type": "LatentMultiply", "inputs": {"samples": ["1", 0], "multiplier": 0.5}},
    "3": {"class_type": "SaveLatent", "inputs": {"samples": ["2", 0], "filename_prefix": "latents/minimal"}},
}
MINIMAL_UI = json.loads("""
{"id":"00000000-0000-0000-0000-000000000000","revision":0,"last_node_id":3,"last_link_id":4,
 "nodes":[
  {"id":1,"type":"EmptyLatentImage","pos":[100,130],"size":[270,106],"flags":{},"order":0,"mode":0,
   "inputs":[{"localized_name":"width","name":"width","type":"INT","widget":{"name":"width"},"link":null},
             {"localized_name":"height","name":"height","type":"INT","widget":{"name":"height"},"link":null},
             {"localized_name":"batch_size","name":"batch_size","type":"INT","widget":{"name":"batch_size"},"link":null}],
   "outputs":[{"localized_name":"LATENT","name":"LATENT","type":"LATENT","links":[3]}],
   "properties":{"Node name for S&R":"EmptyLatentImage"},"widgets_values":[512,512,1]},
  {"id":2,"type":"LatentMultiply","pos":[470,130],"size":[270,58],"flags":{},"order":1,"mode":0,
   "inputs":[{"localized_name":"samples","name":"samples","type":"LATENT","link":3},
             {"localized_name":"multiplier","name":"multiplier","type":"FLOAT","widget":{"name":"multiplier"},"link":null}],
   "outputs":[{"localized_name":"LATENT","name":"LATENT","type":"LATENT","links":[4]}],
   "properties":{"Node name for S&R":"LatentMultiply"},"widgets_values":[0.5]},
  {"id":3,"type":"SaveLatent","pos":[840,130],"size":[270,58],"flags":{},"order":2,"mode":0,
   "inputs":[{"localized_name":"samples","name":"samples","type":"LATENT","link":4},
             {"localized_name":"filename_prefix","name":"filename_prefix","type":"STRING","widget":{"name":"filename_prefix"},"link":null}],
   "outputs":[],"properties":{},"widgets_values":["latents/minimal"]}],
 "links":[[3,1,0,2,0,"LATENT"],[4,2,0,3,0,"LATENT"]],
 "groups":[],"config":{},"extra":{"ds":{"scale":1,"offset":[0,0]}},"version":0.4}
""")


def strip_meta(prompt: dict) -> dict:
    return {nid: {"class_type": spec["class_type"], "inputs": spec["inputs"]} for nid, spec in prompt.items()}


def node(nid: int, kind: str, widgets: list | dict | None = None, inputs: list | None = None, mode: int = 0,
         outputs: list | None = None, **extra: object) -> dict:
    return {"id": nid, "type": kind, "mode": mode, "inputs": inputs or [], "outputs": outputs or [],
            "widgets_values": widgets if widgets is not None else [], **extra}


def graph(nodes: list, links: list) -> dict:
    return {"nodes": nodes, "links": links, "version": 0.4}


def test_minimal_example_converts_to_the_reference_api() -> None:
    prompt = ui_to_api(MINIMAL_UI, REG)
    assert strip_meta(prompt) == MINIMAL_API
    assert prompt["1"]["_meta"] == {"title": "EmptyLatentImage"}


def test_seed_control_value_is_skipped_and_forceinput_has_no_widget() -> None:
    ui = graph([
        node(4, "Loader", ["b.safetensors"], outputs=[{"name": "MODEL", "type": "MODEL", "links": [1]}]),
        node(5, "EmptyLatentImage", [64, 32, 2], outputs=[{"name": "LATENT", "type": "LATENT", "links": [2]}]),
        # seed, its control value, steps, cfg, sampler, scheduler, denoise, jitter (+control), note
        node(3, "Sampler", [123, "randomize", 12, 4.5, "heun", "karras", 0.75, 9, "fixed", "text"],
             inputs=[{"name": "model", "type": "MODEL", "link": 1}, {"name": "latent_image", "type": "LATENT", "link": 2}],
             title="My sampler"),
    ], [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 1, "LATENT"]])
    prompt = ui_to_api(ui, REG)
    assert prompt["3"] == {"class_type": "Sampler", "_meta": {"title": "My sampler"}, "inputs": {
        "seed": 123, "steps": 12, "cfg": 4.5, "sampler_name": "heun", "scheduler": "karras", "denoise": 0.75,
        "jitter": 9, "note": "text", "model": ["4", 0], "latent_image": ["5", 0]}}
    assert prompt["4"]["inputs"] == {"ckpt_name": "b.safetensors"}


def test_control_value_missing_is_tolerated_and_missing_widgets_get_defaults() -> None:
    ui = graph([node(3, "Sampler", [5, 12])], [])
    inputs = ui_to_api(ui, REG)["3"]["inputs"]
    assert inputs == {"seed": 5, "steps": 12, "cfg": 8.0, "sampler_name": "euler", "scheduler": "normal",
                      "denoise": 1.0, "jitter": 0, "note": "hi"}


class Clusterer:
    """A node whose seeds are not generation seeds: they opt out of the editor's control widget."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"k": ("INT", {"default": 4}),
                             "seed": ("INT", {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": False}),
                             "n_init": ("INT", {"default": 4}),
                             "mode": (["fixed", "kmeans"],)},
                "optional": {"noise_seed": ("INT", {"default": 1, "control_after_generate": False})}}

    def op(self, k: int, seed: int, n_init: int, mode: str, noise_seed: int = 1) -> tuple:
        return ({},)


class Picker:
    """An opted-out seed followed by a combo that holds a control value."""

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "op"
    CATEGORY = "latent"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"seed": ("INT", {"default": 0, "control_after_generate": False}),
                             "how": (["fixed", "random"],)}}

    def op(self, seed: int, how: str) -> tuple:
        return ({},)


def test_seed_that_opts_out_of_the_control_widget_reads_old_and_new_files() -> None:
    """The editor adds no control widget to a seed declaring ``control_after_generate: False``; files
    saved before the node declared it carry a control value after that seed, files saved after do not."""
    reg = {**REG, "Clusterer": Clusterer, "Picker": Picker}
    want = {"k": 3, "seed": 77, "n_init": 6, "mode": "fixed", "noise_seed": 5}
    old = graph([node(1, "Clusterer", [3, 77, "randomize", 6, "fixed", 5, "increment"])], [])
    new = graph([node(1, "Clusterer", [3, 77, 6, "fixed", 5])], [])
    assert ui_to_api(old, reg)["1"]["inputs"] == want
    assert ui_to_api(new, reg)["1"]["inputs"] == want
    ui = api_to_ui({"1": {"class_type": "Clusterer", "inputs": want}}, reg)
    assert ui["nodes"][0]["widgets_values"] == [3, 77, 6, "fixed", 5]  # what the editor saves now
    assert ui_to_api(ui, reg)["1"]["inputs"] == want
    assert set_ui_widget(old, "1", "n_init", 8, reg) and old["nodes"][0]["widgets_values"][3] == 8
    # the next widget is a combo that holds "fixed": a value there is the combo's
    assert ui_to_api(graph([node(1, "Picker", [77, "fixed"])], []), reg)["1"]["inputs"] == {"seed": 77, "how": "fixed"}


def test_widgets_values_as_dict() -> None:
    ui = graph([node(1, "EmptyLatentImage", {"height": 96, "width": 80})], [])
    assert ui_to_api(ui, REG)["1"]["inputs"] == {"width": 80, "height": 96, "batch_size": 1}


def test_linked_widget_uses_the_link_and_forceinput_links() -> None:
    ui = graph([
        node(1, "Loader", ["a.safetensors"], outputs=[{"name": "MODEL", "type": "MODEL", "links": []},
                                                      {"name": "INT", "type": "INT", "links": [7, 8]}]),
        node(2, "Sampler", [1, "fixed", 2, 3.0, "euler", "normal", 1.0, 0, "fixed", ""],
             inputs=[{"name": "steps", "type": "INT", "widget": {"name": "steps"}, "link": 7},
                     {"name": "count", "type": "INT", "link": 8}]),
    ], [[7, 1, 1, 2, 0, "INT"], [8, 1, 1, 2, 1, "INT"]])
    inputs = ui_to_api(ui, REG)["2"]["inputs"]
    assert inputs["steps"] == ["1", 1] and inputs["count"] == ["1", 1] and inputs["seed"] == 1


def test_primitive_node_is_inlined_and_reroutes_are_followed() -> None:
    ui = graph([
        node(10, "PrimitiveNode", [777, "increment"], outputs=[{"name": "INT", "type": "INT", "links": [1]}]),
        node(11, "EmptyLatentImage", [64, 64, 1], outputs=[{"name": "LATENT", "type": "LATENT", "links": [2]}]),
        node(12, "Reroute", None, inputs=[{"name": "", "type": "*", "link": 2}],
             outputs=[{"name": "", "type": "LATENT", "links": [3]}]),
        node(13, "Reroute", None, inputs=[{"name": "", "type": "*", "link": 3}],
             outputs=[{"name": "", "type": "LATENT", "links": [4]}]),
        node(14, "Sampler", [1, "fixed", 2, 3.0, "euler", "normal", 1.0],
             inputs=[{"name": "seed", "type": "INT", "widget": {"name": "seed"}, "link": 1},
                     {"name": "latent_image", "type": "LATENT", "link": 4}]),
        node(15, "Note", ["just a note"]), node(16, "MarkdownNote", ["# note"]),
    ], [[1, 10, 0, 14, 0, "INT"], [2, 11, 0, 12, 0, "LATENT"], [3, 12, 0, 13, 0, "LATENT"], [4, 13, 0, 14, 1, "LATENT"]])
    prompt = ui_to_api(ui, REG)
    assert sorted(prompt) == ["11", "14"]
    assert prompt["14"]["inputs"]["seed"] == 777
    assert prompt["14"]["inputs"]["latent_image"] == ["11", 0]


def test_muted_node_is_dropped_with_links_to_it() -> None:
    ui = copy.deepcopy(MINIMAL_UI)
    ui["nodes"][1]["mode"] = 2
    prompt = ui_to_api(ui, REG)
    assert sorted(prompt) == ["1", "3"]
    assert prompt["3"]["inputs"] == {"filename_prefix": "latents/minimal"}
    assert [p.type for p in validate(prompt, REG)] == ["required_input_missing"]


def test_bypassed_node_passes_its_same_type_input_through() -> None:
    ui = copy.deepcopy(MINIMAL_UI)
    ui["nodes"][1]["mode"] = 4
    prompt = ui_to_api(ui, REG)
    assert strip_meta(prompt) == {"1": MINIMAL_API["1"], "3": {
        "class_type": "SaveLatent", "inputs": {"samples": ["1", 0], "filename_prefix": "latents/minimal"}}}


def test_bypass_without_a_matching_input_type_drops_the_link() -> None:
    ui = graph([
        node(1, "Loader", ["a.safetensors"], mode=4, outputs=[{"name": "MODEL", "type": "MODEL", "links": [1]}]),
        node(2, "Sampler", [1, "fixed", 2, 3.0, "euler", "normal", 1.0], inputs=[{"name": "model", "type": "MODEL", "link": 1}]),
    ], [[1, 1, 0, 2, 0, "MODEL"]])
    assert "model" not in ui_to_api(ui, REG)["2"]["inputs"]


def test_upload_button_value_is_skipped() -> None:
    ui = graph([node(1, "Upload", ["b.png", "image", 2.5])], [])
    assert ui_to_api(ui, REG)["1"]["inputs"] == {"image": "b.png", "gain": 2.5}


def test_links_as_objects_and_unknown_classes_are_kept_for_validation() -> None:
    ui = graph([node(1, "EmptyLatentImage", [64, 64, 1], outputs=[{"name": "LATENT", "type": "LATENT", "links": [5]}]),
                node(2, "SomePackNode", [1, 2], inputs=[{"name": "latent", "type": "LATENT", "link": 5}])],
               [{"id": 5, "origin_id": 1, "origin_slot": 0, "target_id": 2, "target_slot": 0, "type": "LATENT"}])
    prompt = ui_to_api(ui, REG)
    assert prompt["2"]["inputs"] == {"latent": ["1", 0]} and prompt["2"]["class_type"] == "SomePackNode"
    assert "missing_node_type" in {p.type for p in validate(prompt, REG)}


@pytest.mark.parametrize("bad", [
    {"nodes": "x", "links": []},
    {"nodes": [{"id": 1}], "links": []},
    {"nodes": [], "links": [["x"]]},
    {"nodes": [{"id": 1, "type": "EmptyLatentImage", "widgets_values": 5}], "links": []},
    {"nodes": [{"id": 1, "type": "abc-uuid"}], "links": [], "definitions": {"subgraphs": [{"id": "abc-uuid"}]}},
    {"nodes": [{"id": 1, "type": "workflow>My group"}], "links": []},
])
def test_malformed_ui_graphs_raise_workflow_error(bad: dict) -> None:
    with pytest.raises(WorkflowError):
        ui_to_api(bad, REG)


def test_api_to_ui_round_trip_and_layout() -> None:
    api = {
        "4": {"class_type": "Loader", "inputs": {"ckpt_name": "b.safetensors"}, "_meta": {"title": "Loader"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 32, "batch_size": 2},
              "_meta": {"title": "EmptyLatentImage"}},
        "3": {"class_type": "Sampler", "_meta": {"title": "Seeded"}, "inputs": {
            "seed": 9, "steps": ["4", 1], "cfg": 2.0, "sampler_name": "heun", "scheduler": "karras", "denoise": 0.5,
            "jitter": 1, "note": "n", "model": ["4", 0], "latent_image": ["5", 0], "count": ["4", 1]}},
        "6": {"class_type": "SaveLatent", "inputs": {"samples": ["3", 0], "filename_prefix": "x"}, "_meta": {"title": "SaveLatent"}},
    }
    ui = api_to_ui(api, REG)
    by_id = {n["id"]: n for n in ui["nodes"]}
    # seed, control, steps (default: it is linked), cfg, sampler, scheduler, denoise, jitter, control, note
    assert by_id[3]["widgets_values"] == [9, "fixed", 20, 2.0, "heun", "karras", 0.5, 1, "fixed", "n"]
    assert by_id[3]["title"] == "Seeded" and "title" not in by_id[4]
    assert by_id[3]["pos"][0] > by_id[4]["pos"][0] and by_id[6]["pos"][0] > by_id[3]["pos"][0]
    names = [i["name"] for i in by_id[3]["inputs"]]
    for link in ui["links"]:
        link_id, origin, slot, target, target_slot, kind = link
        assert by_id[target]["inputs"][target_slot]["link"] == link_id
        assert link_id in by_id[origin]["outputs"][slot]["links"]
        assert kind == by_id[origin]["outputs"][slot]["type"]
    assert names.index("count") > names.index("denoise")
    assert ui_to_api(json.loads(json.dumps(ui)), REG) == api


@pytest.mark.parametrize(("api", "needle"), [
    ({"a": {"class_type": "EmptyLatentImage", "inputs": {}}}, "integer node ids"),
    ({"1": {"class_type": "Nope", "inputs": {}}}, "unknown class"),
    ({"1": {"class_type": "SaveLatent", "inputs": {"samples": ["7", 0]}}}, "dangling link"),
    ({"1": {"class_type": "SaveLatent", "inputs": []}}, "'inputs' must be an object"),
])
def test_api_to_ui_refuses_what_it_cannot_draw(api: dict, needle: str) -> None:
    with pytest.raises(WorkflowError, match=needle):
        api_to_ui(api, REG)


def test_minimal_api_round_trips_through_ui() -> None:
    assert strip_meta(ui_to_api(api_to_ui(MINIMAL_API, REG), REG)) == MINIMAL_API


def test_set_ui_widget_writes_after_the_control_value() -> None:
    ui = graph([node(3, "Sampler", [1, "randomize", 2, 3.0, "euler", "normal", 1.0])], [])
    assert set_ui_widget(ui, "3", "steps", 30, REG)
    assert ui["nodes"][0]["widgets_values"] == [1, "randomize", 30, 3.0, "euler", "normal", 1.0]
    assert not set_ui_widget(ui, "3", "model", 1, REG)


def test_from_data_recognises_formats() -> None:
    assert from_data(MINIMAL_UI, REG).source == "ui"
    assert from_data(MINIMAL_API, REG).prompt == MINIMAL_API
    body = {"prompt": MINIMAL_API, "extra_data": {"extra_pnginfo": {"workflow": MINIMAL_UI}}}
    wf = from_data(body, REG)
    assert wf.prompt == MINIMAL_API and wf.ui == MINIMAL_UI
    for bad in ([1, 2], {}, {"a": 1}, {"1": {"inputs": {}}}):
        with pytest.raises(WorkflowError):
            from_data(bad, REG)


@pytest.mark.parametrize(("content", "needle"), [
    (b"\xff\xfe\x00garbage", "not UTF-8"),
    (b"{not json", "not valid JSON"),
    (b'{"1": {"class_type": "EmptyLatentImage", "inputs": {"width": NaN}}}', "NaN"),
    (b"[" * 100000 + b"]" * 100000, "nested too deeply"),
    (b'{"1": {"class_type": "EmptyLatentImage", "inputs": {"width": ' + b"9" * 50000 + b"}}}", "digits"),
    (b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x00IEND\xaeB`\x82", "no 'prompt' or 'workflow'"),
])
def test_hostile_files_give_clear_errors(tmp_path, content: bytes, needle: str) -> None:
    path = tmp_path / "wf.json"
    path.write_bytes(content)
    with pytest.raises(WorkflowError, match=needle):
        load(path, REG)


def test_missing_file_is_a_workflow_error(tmp_path) -> None:
    with pytest.raises(WorkflowError, match="cannot read"):
        load(tmp_path / "absent.json", REG)


def test_png_with_chunks_loads_prompt_and_workflow(tmp_path) -> None:
    import numpy as np

    image = np.zeros((4, 4, 3), dtype=np.uint8)
    both = files.save_png(image, tmp_path / "both.png", MINIMAL_API, {"workflow": MINIMAL_UI})
    wf = load(both, REG)
    assert wf.prompt == MINIMAL_API and wf.ui == MINIMAL_UI and wf.source == "png"
    ui_only = files.save_png(image, tmp_path / "ui.png", None, {"workflow": MINIMAL_UI})
    assert strip_meta(load(ui_only, REG).prompt) == MINIMAL_API


def _stub(inputs: dict, outputs: tuple = (), output_node: bool = False) -> type:
    """A stand-in class declaring ComfyUI's inputs in ComfyUI's order (only declarations matter here)."""

    def op(self, **kwargs: object) -> tuple:
        return ()

    return type("Stub", (), {"INPUT_TYPES": classmethod(lambda cls: {"required": inputs}), "RETURN_TYPES": outputs,
                             "FUNCTION": "op", "CATEGORY": "t", "OUTPUT_NODE": output_node, "op": op})


CORE = {
    "KSampler": _stub({
        "model": ("MODEL",), "seed": ("INT", {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True}),
        "steps": ("INT", {"default": 20, "min": 1, "max": 10000}), "cfg": ("FLOAT", {"default": 8.0}),
        "sampler_name": (["euler", "heun"],), "scheduler": (["normal", "karras"],), "positive": ("CONDITIONING",),
        "negative": ("CONDITIONING",), "latent_image": ("LATENT",), "denoise": ("FLOAT", {"default": 1.0})}, ("LATENT",)),
    "CheckpointLoaderSimple": _stub({"ckpt_name": (["v1-5-pruned-emaonly-fp16.safetensors"],)}, ("MODEL", "CLIP", "VAE")),
    "CLIPTextEncode": _stub({"text": ("STRING", {"multiline": True}), "clip": ("CLIP",)}, ("CONDITIONING",)),
    "EmptyLatentImage": Empty,
    "VAEDecode": _stub({"samples": ("LATENT",), "vae": ("VAE",)}, ("IMAGE",)),
    "SaveImage": _stub({"images": ("IMAGE",), "filename_prefix": ("STRING", {"default": "ComfyUI"})}, (), True),
}


def _old_node(nid: int, kind: str, widgets: list, inputs: list, outputs: list) -> dict:
    """An older editor's node: ``inputs`` lists only sockets, not widgets."""
    return {"id": nid, "type": kind, "mode": 0, "widgets_values": widgets,
            "inputs": [{"name": n, "type": t, "link": link} for n, t, link in inputs],
            "outputs": [{"name": n, "type": t, "links": links, "slot_index": i} for i, (n, t, links) in enumerate(outputs)]}


def test_the_editors_default_graph_converts_to_its_known_prompt() -> None:
    """ComfyUI's default text-to-image graph (older editor format) and the prompt it posts."""
    ui = graph([
        _old_node(3, "KSampler", [156680208700286, "randomize", 20, 8, "euler", "normal", 1],
                  [("model", "MODEL", 1), ("positive", "CONDITIONING", 4), ("negative", "CONDITIONING", 6),
                   ("latent_image", "LATENT", 2)], [("LATENT", "LATENT", [7])]),
        _old_node(4, "CheckpointLoaderSimple", ["v1-5-pruned-emaonly-fp16.safetensors"], [],
                  [("MODEL", "MODEL", [1]), ("CLIP", "CLIP", [3, 5]), ("VAE", "VAE", [8])]),
        _old_node(5, "EmptyLatentImage", [512, 512, 1], [], [("LATENT", "LATENT", [2])]),
        _old_node(6, "CLIPTextEncode", ["beautiful scenery nature glass bottle landscape, , purple galaxy bottle,"],
                  [("clip", "CLIP", 3)], [("CONDITIONING", "CONDITIONING", [4])]),
        _old_node(7, "CLIPTextEncode", ["text, watermark"], [("clip", "CLIP", 5)], [("CONDITIONING", "CONDITIONING", [6])]),
        _old_node(8, "VAEDecode", [], [("samples", "LATENT", 7), ("vae", "VAE", 8)], [("IMAGE", "IMAGE", [9])]),
        _old_node(9, "SaveImage", ["ComfyUI"], [("images", "IMAGE", 9)], []),
    ], [[1, 4, 0, 3, 0, "MODEL"], [2, 5, 0, 3, 3, "LATENT"], [3, 4, 1, 6, 0, "CLIP"], [4, 6, 0, 3, 1, "CONDITIONING"],
        [5, 4, 1, 7, 0, "CLIP"], [6, 7, 0, 3, 2, "CONDITIONING"], [7, 3, 0, 8, 0, "LATENT"], [8, 4, 2, 8, 1, "VAE"],
        [9, 8, 0, 9, 0, "IMAGE"]])
    expected = {
        "3": {"class_type": "KSampler", "inputs": {
            "seed": 156680208700286, "steps": 20, "cfg": 8, "sampler_name": "euler", "scheduler": "normal", "denoise": 1,
            "model": ["4", 0], "positive": ["6", 0], "negative": ["7", 0], "latent_image": ["5", 0]}},
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "v1-5-pruned-emaonly-fp16.safetensors"}},
        "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 512, "height": 512, "batch_size": 1}},
        "6": {"class_type": "CLIPTextEncode", "inputs": {
            "text": "beautiful scenery nature glass bottle landscape, , purple galaxy bottle,", "clip": ["4", 1]}},
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "text, watermark", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]}},
    }
    prompt = ui_to_api(ui, CORE)
    assert strip_meta(prompt) == expected
    assert validate(prompt, CORE) == []
    assert strip_meta(ui_to_api(api_to_ui(prompt, CORE), CORE)) == expected
