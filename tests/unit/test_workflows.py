"""Each example workflow's UI form (what the editor opens) and API twin (what /prompt runs) hold the same
nodes, widget values and links, and use only nodes this pack declares or core ComfyUI nodes.

Node inputs are read from the `define_schema` source in nodes/ (no ComfyUI needed): the UI form stores
widget values by position, so their order must be the schema's (required inputs first, then optional).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UI_DIR = REPO / "example_workflows"
API_DIR = UI_DIR / "api"
WIDGET_TYPES = {"Int": "INT", "Float": "FLOAT", "String": "STRING", "Boolean": "BOOLEAN", "Combo": "COMBO"}
SOCKET_TYPES = {"Image": "IMAGE", "Audio": "AUDIO", "Video": "VIDEO", "Latent": "LATENT", "Clip": "CLIP",
                "Float": "FLOAT", "Int": "INT", "Mask": "MASK", "Model": "MODEL", "Conditioning": "CONDITIONING",
                "Guider": "GUIDER", "Noise": "NOISE", "Sigmas": "SIGMAS", "Sampler": "SAMPLER", "String": "STRING"}
CONTROL_VALUES = {"fixed", "increment", "decrement", "randomize"}


@dataclass
class NodeSchema:
    widgets: list[str] = field(default_factory=list)  # in the editor's order
    controlled: set[str] = field(default_factory=set)  # widgets followed by a control_after_generate value
    uploads: set[str] = field(default_factory=set)  # widgets followed by an upload-button value
    sockets: dict[str, str] = field(default_factory=dict)  # name -> type, in the editor's order
    required_sockets: set[str] = field(default_factory=set)
    outputs: list[str] = field(default_factory=list)


# Core ComfyUI 0.3.64 nodes the workflows use (nodes.py CLIPLoader/LoadImage, comfy_extras/nodes_video.py).
CORE_NODES = {
    "CLIPLoader": NodeSchema(widgets=["clip_name", "type", "device"], outputs=["CLIP"]),
    "LoadImage": NodeSchema(widgets=["image"], uploads={"image"}, outputs=["IMAGE", "MASK"]),
    "LoadVideo": NodeSchema(widgets=["file"], uploads={"file"}, outputs=["VIDEO"]),
    "GetVideoComponents": NodeSchema(sockets={"video": "VIDEO"}, required_sockets={"video"},
                                     outputs=["IMAGE", "AUDIO", "FLOAT"]),
    "SaveVideo": NodeSchema(widgets=["filename_prefix", "format", "codec"], sockets={"video": "VIDEO"},
                            required_sockets={"video"}),
    # the native path (nodes.py, comfy_extras/nodes_custom_sampler.py, nodes_video.py)
    "UNETLoader": NodeSchema(widgets=["unet_name", "weight_dtype"], outputs=["MODEL"]),
    "LoraLoaderModelOnly": NodeSchema(widgets=["lora_name", "strength_model"], sockets={"model": "MODEL"},
                                      required_sockets={"model"}, outputs=["MODEL"]),
    "CLIPTextEncode": NodeSchema(widgets=["text"], sockets={"clip": "CLIP"}, required_sockets={"clip"},
                                 outputs=["CONDITIONING"]),
    "KSamplerSelect": NodeSchema(widgets=["sampler_name"], outputs=["SAMPLER"]),
    "BasicScheduler": NodeSchema(widgets=["scheduler", "steps", "denoise"], sockets={"model": "MODEL"},
                                 required_sockets={"model"}, outputs=["SIGMAS"]),
    "SamplerCustomAdvanced": NodeSchema(sockets={"noise": "NOISE", "guider": "GUIDER", "sampler": "SAMPLER",
                                                 "sigmas": "SIGMAS", "latent_image": "LATENT"},
                                        required_sockets={"noise", "guider", "sampler", "sigmas", "latent_image"},
                                        outputs=["LATENT", "LATENT"]),
    "CreateVideo": NodeSchema(widgets=["fps"], sockets={"images": "IMAGE", "audio": "AUDIO"},
                              required_sockets={"images"}, outputs=["VIDEO"]),
}


def _custom_types(tree: ast.Module) -> dict[str, str]:
    """`Name = io.Custom("TYPE")` assignments."""
    found = {}
    for node in tree.body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Attribute) and node.value.func.attr == "Custom"):
            found[node.targets[0].id] = node.value.args[0].value
    return found


def _io_kind(call: ast.Call) -> tuple[str, str | None]:
    """("io", "Int") for io.Int.Input(...), ("custom", "JointAVModel") for JointAVModel.Input(...)."""
    owner = call.func.value
    if isinstance(owner, ast.Attribute):
        return "io", owner.attr
    return "custom", owner.id


def _keyword(call: ast.Call, name: str):
    for kw in call.keywords:
        if kw.arg == name and isinstance(kw.value, ast.Constant):
            return kw.value.value
    return None


def declared_nodes() -> dict[str, NodeSchema]:
    """Node id -> inputs and outputs, read from every `io.Schema(...)` in nodes/*.py."""
    sources = {p: ast.parse(p.read_text()) for p in sorted((REPO / "nodes").glob("*.py"))}
    customs = {}
    for tree in sources.values():
        customs.update(_custom_types(tree))

    def type_of(call: ast.Call) -> str:
        kind, name = _io_kind(call)
        if kind == "io" and name == "MultiType":  # a socket of several types: "A,B" as the editor shows it
            types = next(kw.value for kw in call.keywords if kw.arg == "types")
            return ",".join(type_of(ast.Call(func=ast.Attribute(value=t, attr="Input"), args=[], keywords=[]))
                            for t in types.elts)
        return customs[name] if kind == "custom" else WIDGET_TYPES.get(name) or SOCKET_TYPES[name]

    nodes = {}
    for tree in sources.values():
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute) and call.func.attr == "Schema"):
                continue
            node_id = _keyword(call, "node_id")
            args = {kw.arg: kw.value for kw in call.keywords}
            schema = NodeSchema()
            inputs = [c for c in args["inputs"].elts] if "inputs" in args else []
            ordered = ([c for c in inputs if not _keyword(c, "optional")]
                       + [c for c in inputs if _keyword(c, "optional")])
            for item in ordered:
                name = item.args[0].value
                kind, attr = _io_kind(item)
                if kind == "io" and attr in WIDGET_TYPES and not _keyword(item, "force_input"):
                    schema.widgets.append(name)
                    if _keyword(item, "control_after_generate"):
                        schema.controlled.add(name)
                else:
                    schema.sockets[name] = type_of(item)
                    if not _keyword(item, "optional"):
                        schema.required_sockets.add(name)
            schema.outputs = [type_of(c) for c in args["outputs"].elts] if "outputs" in args else []
            nodes[node_id] = schema
    return nodes


OURS = declared_nodes()
KNOWN = {**OURS, **CORE_NODES}
PAIRS = sorted(p.stem for p in UI_DIR.glob("*.json"))


def test_nodes_are_declared():
    assert len(OURS) >= 9 and all(n.startswith("JointAV") for n in OURS), sorted(OURS)
    assert OURS["JointAVSampler"].widgets[0] == "seed" and "seed" in OURS["JointAVSampler"].controlled


def test_every_ui_workflow_has_an_api_twin():
    assert PAIRS, "no example workflows"
    assert PAIRS == sorted(p.stem for p in API_DIR.glob("*.json"))


def ui_values(node: dict, schema: NodeSchema) -> dict[str, object]:
    """The UI node's widget values by input name, with the editor-only extras checked and dropped."""
    values = list(node["widgets_values"])
    named = {}
    for name in schema.widgets:
        assert values, f"node {node['id']} ({node['type']}): too few widget values for {schema.widgets}"
        named[name] = values.pop(0)
        if name in schema.controlled:
            assert values and values.pop(0) in CONTROL_VALUES, f"node {node['id']}: no control value after {name}"
        if name in schema.uploads:
            assert values and values.pop(0) == "image", f"node {node['id']}: no upload value after {name}"
    assert not values, f"node {node['id']} ({node['type']}): extra widget values {values}"
    return named


@pytest.mark.parametrize("name", PAIRS)
def test_ui_and_api_forms_match(name):
    ui = json.loads((UI_DIR / f"{name}.json").read_text())
    api = json.loads((API_DIR / f"{name}.json").read_text())
    assert ui.get("version") == 0.4 and isinstance(ui.get("links"), list)
    nodes = {str(n["id"]): n for n in ui["nodes"]}
    assert set(nodes) == set(api), f"{name}: node ids differ"
    for node_id, node in nodes.items():
        kind = node["type"]
        assert kind in KNOWN, f"{name}: node type {kind} is neither declared in nodes/ nor a listed core node"
        assert api[node_id]["class_type"] == kind
        schema = KNOWN[kind]
        widgets = ui_values(node, schema)
        api_inputs = api[node_id]["inputs"]
        literal = {k: v for k, v in api_inputs.items() if not isinstance(v, list)}
        assert widgets == literal, f"{name} node {node_id} ({kind}): UI {widgets} vs API {literal}"
        assert [i["name"] for i in node["inputs"]] == list(schema.sockets), f"{name} node {node_id}: sockets"
        linked = {k for k, v in api_inputs.items() if isinstance(v, list)}
        assert schema.required_sockets <= linked <= set(schema.sockets), f"{name} node {node_id}: links {linked}"
        assert [o["type"] for o in node["outputs"]] == schema.outputs, f"{name} node {node_id}: outputs"

    ui_links = set()
    for link_id, src, src_slot, dst, dst_slot, type_ in ui["links"]:
        target = nodes[str(dst)]
        socket = target["inputs"][dst_slot]
        assert socket["link"] == link_id
        assert link_id in nodes[str(src)]["outputs"][src_slot]["links"]
        assert type_ == KNOWN[nodes[str(src)]["type"]].outputs[src_slot], f"{name}: link {link_id}"
        assert type_ in socket["type"].split(","), f"{name}: link {link_id} of {type_} into a {socket['type']} socket"
        ui_links.add((str(dst), socket["name"], str(src), src_slot))
    api_links = {(node_id, k, v[0], v[1]) for node_id, n in api.items() for k, v in n["inputs"].items()
                 if isinstance(v, list)}
    assert ui_links == api_links, f"{name}: UI links {sorted(ui_links ^ api_links)} differ from API references"


def test_files_are_what_the_generator_writes():
    done = subprocess.run([sys.executable, str(REPO / "tools" / "make_workflows.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, f"example workflows are stale; run tools/make_workflows.py\n{done.stderr}"


@pytest.mark.parametrize("name", PAIRS)
def test_every_example_saves_signed_clips(name):
    api = json.loads((API_DIR / f"{name}.json").read_text())
    kinds = [n["class_type"] for n in api.values()]
    assert "JointAVSaveVideo" in kinds, f"{name}: clips must be saved with the watermark and signed manifest"
    assert "SaveVideo" not in kinds, f"{name}: core Save Video writes clips that JointAV Verify reports NOT VALID"


def test_the_sampler_input_has_one_name():
    assert "skip_layer" in OURS["JointAVSampler"].widgets and "slg_layer" not in OURS["JointAVSampler"].widgets
    source = (REPO / "nodes" / "sampler.py").read_text()
    assert "display_name=" not in source.split('"skip_layer"')[1].split(")")[0], "the editor shows another name"


@pytest.mark.parametrize("name", PAIRS)
def test_every_template_has_a_jpeg_thumbnail(name):
    thumbnail = UI_DIR / f"{name}.jpg"
    assert thumbnail.is_file(), f"the template browser asks for {thumbnail.name}; run tools/make_thumbnails.py"
    data = thumbnail.read_bytes()
    assert data[:3] == b"\xff\xd8\xff" and data[-2:] == b"\xff\xd9", f"{thumbnail.name} is not a JPEG"


def test_the_default_models_thumbnail_is_a_render_of_its_workflow():
    import cv2
    import numpy as np

    spec = importlib.util.spec_from_file_location("make_thumbnails", REPO / "tools" / "make_thumbnails.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    name = "jointav_default_text_to_av"
    prompt = json.loads((API_DIR / f"{name}.json").read_text())
    rendered = tool.grid(tool.render_default(prompt, tool.DEFAULT_IMAGE)).astype(np.float32)
    shipped = cv2.imread(str(UI_DIR / f"{name}.jpg")).astype(np.float32)
    assert shipped.shape == rendered.shape
    difference = np.abs(shipped - rendered).mean()
    other = np.abs(shipped - np.roll(rendered, 96, axis=1)).mean()  # another picture of the same kind of scene
    print(f"thumbnail vs fresh render: mean abs difference {difference:.2f}/255 (shifted: {other:.2f})")
    assert difference < 4 < other, "the thumbnail is not this workflow's render; run tools/make_thumbnails.py"


def test_every_node_with_widgets_checks_them_with_the_shared_helper():
    """ComfyUI 0.3.64 does not check V3 combo values: a node whose widgets bypass nodes/validation.py would run
    with a value its list does not offer."""
    unchecked = []
    for path in sorted((REPO / "nodes").glob("*.py")):
        for cls in (n for n in ast.parse(path.read_text()).body if isinstance(n, ast.ClassDef)):
            methods = {f.name: f for f in cls.body if isinstance(f, ast.FunctionDef)}
            if "define_schema" not in methods:
                continue
            widgets = [c for c in ast.walk(methods["define_schema"]) if isinstance(c, ast.Call)
                       and isinstance(c.func, ast.Attribute) and c.func.attr == "Input"
                       and isinstance(c.func.value, ast.Attribute) and c.func.value.attr in WIDGET_TYPES]
            check = methods.get("validate_inputs")
            calls = {c.func.id for c in ast.walk(check) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)} \
                if check else set()
            if widgets and ("validate" not in calls or check.args.kwarg is None):
                unchecked.append(f"{path.name}:{cls.name}")
    assert not unchecked, f"nodes with widgets not checked by nodes.validation.validate(cls, **values): {unchecked}"
