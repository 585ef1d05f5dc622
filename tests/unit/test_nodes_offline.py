"""The CLIP adapter of the Encode Prompt node, without ComfyUI: a stand-in CLIP that behaves like core's
umT5 (padding to at least 512 tokens with id 0, EOS id 1, padded rows zeroed) must come out as the
reference's `[real tokens incl. EOS, 4096]` per prompt, with no weighting syntax applied."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


def _load_adapter():
    # By path: importing the `nodes` package would import ComfyUI.
    spec = importlib.util.spec_from_file_location("jointav_clip_text", REPO / "nodes" / "clip_text.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class FakeUMT5Clip:
    """Core CLIP's interface as the Wan text encoder fills it (sd1_clip tokenizer with min_length 512)."""

    DIM = 4096

    def __init__(self):
        self.tokenize_kwargs = []

    def tokenize(self, text, return_word_ids=False, **kwargs):
        self.tokenize_kwargs.append(kwargs)
        ids = [3 + (sum(map(ord, w)) % 1000) for w in text.split()] + [1]  # words, then EOS
        ids += [0] * max(0, 512 - len(ids))
        return {"umt5xxl": [[(i, 1.0) for i in ids]]}

    def encode_from_tokens(self, tokens, return_pooled=False, return_dict=False):
        ids = torch.tensor([t for t, _ in tokens["umt5xxl"][0]])
        generator = torch.Generator().manual_seed(0)
        rows = torch.randn(len(ids), self.DIM, generator=generator)
        return (rows * (ids != 0).float()[:, None])[None]


def test_padding_is_cut_at_the_real_token_count():
    adapter = _load_adapter()
    clip = FakeUMT5Clip()
    encode = adapter.clip_text_encoder(clip)
    prompts = ["a woman says <S>hello there<E> in a cafe.", "jitter, bad hands", "x " * 700]
    out = encode(prompts)
    assert len(clip.tokenize_kwargs) == 3 and all(kw.get("disable_weights") is True for kw in clip.tokenize_kwargs), (
        "ComfyUI's (word:1.2) weighting must be off: Ovi prompts are plain text")
    expected_lengths = [len(p.split()) + 1 for p in prompts]  # + EOS
    assert [tuple(e.shape) for e in out] == [(n, 4096) for n in expected_lengths]
    for emb, prompt in zip(out, prompts):
        full = clip.encode_from_tokens(clip.tokenize(prompt))[0]
        assert torch.equal(emb, full[: emb.shape[0]])
        assert emb.abs().sum(dim=1).min() > 0, "a real token row was cut as padding"
        assert full[emb.shape[0]:].abs().sum() == 0


def test_real_token_count_reads_the_tokenizer_output():
    adapter = _load_adapter()
    tokens = {"umt5xxl": [[(17, 1.0), (0, 1.0), (22, 1.0), (1, 1.0), (0, 1.0), (0, 1.0)]]}
    assert adapter.real_token_count(tokens) == 4  # an inner id 0 is kept; only the trailing padding goes


# ------------------------------------------------------------------ node input checks (nodes/validation.py)

def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"jointav_nodes_{name}", REPO / "nodes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Declared:
    """A schema input as ComfyUI's V3 declares it: an id, an io type, and options or a range."""

    def __init__(self, id, kind, options=None, min=None, max=None):
        self.id, self._kind, self.options, self.min, self.max = id, kind, options, min, max

    def get_io_type(self):
        return self._kind


SAMPLER_LIKE = [Declared("model", "JOINTAV_MODEL"), Declared("steps", "INT", min=1, max=1000),
                Declared("solver", "COMBO", options=["unipc", "euler", "dpm++"]),
                Declared("shift", "FLOAT", min=0.1, max=100.0), Declared("sample_rate", "COMBO",
                                                                          options=[16000, 44100, 48000]),
                Declared("stereo", "BOOLEAN"), Declared("prefix", "STRING")]
GOOD = {"model": None, "steps": 10, "solver": "euler", "shift": 5, "sample_rate": 44100, "stereo": True,
        "prefix": "video/x"}


def test_good_widget_values_and_linked_inputs_pass():
    check = _load("validation").check_inputs
    assert check("JointAV Sampler", SAMPLER_LIKE, GOOD) is True
    assert check("JointAV Sampler", SAMPLER_LIKE, {k: None for k in GOOD}) is True  # all linked: judged at run time


@pytest.mark.parametrize("name,value,expected", [
    ("solver", "foo", "solver='foo' is not one of the allowed values: 'unipc', 'euler', 'dpm++'"),
    ("sample_rate", 22050, "sample_rate=22050 is not one of the allowed values: 16000, 44100, 48000"),
    ("steps", "abc", "steps='abc' is not a whole number"),
    ("steps", 2.5, "steps=2.5 is not a whole number"),
    ("steps", 0, "steps=0 is outside the allowed range 1 to 1000"),
    ("shift", "x", "shift='x' is not a number"),
    ("stereo", "yes", "stereo='yes' is not true or false"),
    ("prefix", 5, "prefix=5 is not text"),
])
def test_each_bad_value_is_named_with_the_node_the_input_and_what_is_allowed(name, value, expected):
    result = _load("validation").check_inputs("JointAV Sampler", SAMPLER_LIKE, {**GOOD, name: value})
    assert result == f"JointAV Sampler: {expected}"


def test_all_problems_come_in_one_message_and_the_nodes_own_rules_never_see_a_wrong_type():
    seen = {}

    def rules(values):
        seen.update(values)
        return [None if values["steps"] is None else "never"]

    result = _load("validation").check_inputs("N", SAMPLER_LIKE, {**GOOD, "steps": "abc", "solver": "foo"},
                                              extra=rules)
    assert result == "N: steps='abc' is not a whole number; N: solver='foo' is not one of the allowed values: " \
                     "'unipc', 'euler', 'dpm++'"
    assert seen["steps"] is None and seen["solver"] is None and seen["shift"] == 5


def test_a_skipped_input_is_left_to_the_nodes_own_rule():
    check = _load("validation").check_inputs
    inputs = [Declared("model_name", "COMBO", options=["a.safetensors"])]
    assert check("L", inputs, {"model_name": "b.safetensors"}, skip=["model_name"]) is True
    assert check("L", inputs, {"model_name": "b.safetensors"}, skip=["model_name"],
                 extra=lambda v: [f"L: {v['model_name']} missing"]) == "L: b.safetensors missing"


# ------------------------------------------------------------------ old input names (nodes/legacy.py)

def test_an_api_workflow_saved_with_slg_layer_runs_with_skip_layer():
    legacy = _load("legacy")
    saved = json.loads((REPO / "tests" / "unit" / "data" / "sampler_saved_with_slg_layer.json").read_text())
    assert saved["5"]["inputs"]["slg_layer"] == -1  # the example as shipped before the rename
    body = legacy.on_prompt({"prompt": saved, "client_id": "x"})
    inputs = body["prompt"]["5"]["inputs"]
    assert inputs["skip_layer"] == -1 and "slg_layer" not in inputs
    assert body["prompt"]["1"] == saved["1"]  # other nodes untouched
    both = {"9": {"class_type": "JointAVSampler", "inputs": {"slg_layer": 3, "skip_layer": -1}}}
    assert legacy.upgrade_prompt(both) == ["node 9 (JointAVSampler): slg_layer -> skip_layer"]
    assert both["9"]["inputs"] == {"skip_layer": -1}  # the current name wins
    assert legacy.upgrade_prompt("not a prompt") == []


# ------------------------------------------------------------------ Verify's file names (nodes/server_paths.py)

@pytest.fixture
def folders(tmp_path):
    made = {kind: tmp_path / kind for kind in ("output", "input", "temp")}
    for folder in made.values():
        folder.mkdir()
    (made["output"] / "video").mkdir()
    (made["output"] / "video" / "clip.mp4").write_bytes(b"x")
    (made["input"] / "upload.mp4").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("server file")
    (made["output"] / "link.mp4").symlink_to(tmp_path / "secret.txt")
    return {kind: str(path) for kind, path in made.items()}


def test_names_inside_the_folders_are_found(folders):
    resolve = _load("server_paths").resolve_name
    assert resolve("video/clip.mp4", folders) == str(Path(folders["output"]) / "video" / "clip.mp4")
    assert resolve("upload.mp4", folders) == str(Path(folders["input"]) / "upload.mp4")
    assert resolve("input/upload.mp4", folders) == str(Path(folders["input"]) / "upload.mp4")
    with pytest.raises(FileNotFoundError, match=r"no such file in output .*input .*temp"):
        resolve("video/none.mp4", folders)


@pytest.mark.parametrize("name,reason", [
    ("/etc/passwd", "not absolute paths"), ("../secret.txt", "'..' is not allowed"),
    ("video/../../secret.txt", "'..' is not allowed"), ("link.mp4", "leads outside the output folder"),
    ("", "path is empty"),
])
def test_paths_outside_the_folders_are_refused(folders, name, reason):
    paths = _load("server_paths")
    with pytest.raises(PermissionError, match=reason):
        paths.resolve_name(name, folders)
    if reason != "leads outside the output folder":  # needs the folders: judged when the node runs
        assert reason in paths.name_problem(name)
