"""Loading the fusion DiT from every supported file layout, and the errors for files that do not fit.

Files are made by the tests from the fixture weights (`fusion_dit/weights.safetensors`, Ovi's real key
names at tiny size); outputs are checked on a fixture case against the reference's `outputs.safetensors`.
Everything about sizes comes from the fixture's config.json and tensor shapes.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from jointav.errors import CheckpointKeyError, CheckpointKindError
from jointav.model_loader.checkpoint import CheckpointHeader, TensorInfo
from jointav.model_loader.dit import (
    CONFIG_METADATA_KEY,
    detect_fusion_layout,
    infer_fusion_config,
    load_fusion_dit,
    save_fusion_dit,
)
from jointav.model_loader.ovi_keys import fusion_shapes
from jointav.models.config import FusionConfig
from jointav.models.fusion_dit import FusionDiT
from jointav.models.layers import CastConv1d, CastConv3d, CastLinear
from jointav.parity import compare
from jointav.parity.fusion_dit import case_arguments, fusion_config
from conftest import fixture_dir

# Relative L2 error allowed against the float32 reference output (measured: bf16 ~0.004-0.007,
# fp8 ~0.06-0.09 on the public fixture; a scale that is lost or applied twice is off by orders of magnitude).
REL_TOL = {"bf16": 0.02, "fp8": 0.15}
FP8_MAX = torch.finfo(torch.float8_e4m3fn).max  # 448


@pytest.fixture(scope="module")
def fixture():
    folder = fixture_dir("fusion_dit")
    config = json.loads((folder / "config.json").read_text())
    cases = config["cases"]
    case = "t2av" if "t2av" in cases else next(iter(cases))
    return {
        "folder": folder,
        "config": fusion_config(config),
        "weights": load_file(str(folder / "weights.safetensors")),
        "case": case,
        "kwargs": case_arguments(cases[case]["forward_kwargs"], load_file(str(folder / "inputs.safetensors"))),
        "expected": load_file(str(folder / "outputs.safetensors")),
    }


def _meta(config: FusionConfig) -> dict[str, str]:
    return {CONFIG_METADATA_KEY: json.dumps(config.to_dict())}


def _is_layer_weight(name: str, t: torch.Tensor) -> bool:
    # Linear and Conv weights (2-D and up); norm gains are 1-D and modulation tables are not named `.weight`.
    return name.endswith(".weight") and t.dim() >= 2


def _fp8(weights: dict[str, torch.Tensor], scaled: bool) -> dict[str, torch.Tensor]:
    out = {}
    for name, w in weights.items():
        if not _is_layer_weight(name, w):
            out[name] = w
        elif scaled:  # ComfyUI "scaled fp8": w8 = w / scale, scale = absmax / 448
            scale = w.abs().amax() / FP8_MAX
            out[name] = (w / scale).to(torch.float8_e4m3fn)
            out[name[: -len("weight")] + "scale_weight"] = scale.reshape(1)
            out[name[: -len("weight")] + "scale_input"] = torch.ones(1)  # activation scale: must be ignored
        else:
            out[name] = w.to(torch.float8_e4m3fn)
    if scaled:
        out["scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    return out


def _write(tmp_path, fixture, fmt: str):
    """One checkpoint layout made from the fixture weights → (path, load_fusion_dit kwargs, precision class)."""
    w, cfg = fixture["weights"], fixture["config"]
    path = tmp_path / f"{fmt}.safetensors"
    if fmt == "ovi":
        save_file(w, str(path), metadata=_meta(cfg))
    elif fmt in ("model.diffusion_model.", "model."):
        bundled = {f"{fmt}{k}": v for k, v in w.items()}
        bundled["first_stage_model.decoder.conv_in.weight"] = torch.ones(4, 4, 3)  # another component: ignored
        save_file(bundled, str(path), metadata=_meta(cfg))
    elif fmt == "bf16":
        save_file({k: v.to(torch.bfloat16) for k, v in w.items()}, str(path), metadata=_meta(cfg))
    elif fmt in ("fp8-scaled", "fp8"):
        save_file(_fp8(w, scaled=fmt == "fp8-scaled"), str(path), metadata=_meta(cfg))
    elif fmt == "pth":
        path = tmp_path / "dit.pth"
        torch.save(w, path)
        return path, {"config": cfg}, "fp32"  # pickles carry no metadata: the config is given
    elif fmt == "ckpt-state_dict":
        path = tmp_path / "dit.ckpt"
        torch.save({"state_dict": {f"model.diffusion_model.{k}": v for k, v in w.items()}, "epoch": 7}, path)
        return path, {"config": cfg}, "fp32"
    return path, {}, {"bf16": "bf16", "fp8-scaled": "fp8", "fp8": "fp8"}.get(fmt, "fp32")


def _outputs(model, fixture):
    with torch.no_grad():
        outs = model(**fixture["kwargs"])
    return [torch.stack(list(o)) if isinstance(o, (list, tuple)) else o for o in outs]


FORMATS = ["ovi", "model.diffusion_model.", "model.", "bf16", "fp8-scaled", "fp8", "pth", "ckpt-state_dict"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixture_weights_load_from_every_layout_and_reproduce_the_reference(tmp_path, fixture, fmt):
    path, kwargs, precision = _write(tmp_path, fixture, fmt)
    model = load_fusion_dit(path, **kwargs)
    assert model.config == fixture["config"]
    case = fixture["case"]
    for name, got in zip(("vid_out", "audio_out"), _outputs(model, fixture)):
        expected = fixture["expected"][f"{case}.{name}"]
        if precision == "fp32":
            result = compare("loader", f"{fmt}/{case}.{name}", got, expected)
            print(result.line())
            assert result.passed, result.line()
        else:
            rel = float((got.double() - expected.double()).norm() / expected.double().norm())
            print(f"{fmt}/{case}.{name}: relative L2 error {rel:.4f} (tolerance {REL_TOL[precision]}), "
                  f"max abs {float((got - expected).abs().max()):.4f}")
            assert rel < REL_TOL[precision]


def test_stored_dtypes_are_kept_and_scales_loaded(tmp_path, fixture):
    for fmt, dtype in (("bf16", torch.bfloat16), ("fp8-scaled", torch.float8_e4m3fn), ("fp8", torch.float8_e4m3fn)):
        path, _, _ = _write(tmp_path, fixture, fmt)
        model = load_fusion_dit(path)
        for name, m in model.named_modules():
            if isinstance(m, (CastLinear, CastConv1d, CastConv3d)):
                assert m.weight.dtype == dtype, name
                assert (m.weight_scale is not None) == (fmt == "fp8-scaled"), name
        q = model.video_model.blocks[0].self_attn.q
        if fmt == "fp8-scaled":
            w = fixture["weights"]["video_model.blocks.0.self_attn.q.weight"]
            assert torch.allclose(q.weight_scale, w.abs().amax() / FP8_MAX)


def test_weight_dtype_converts_only_layer_weights_and_compute_dtype_is_set(tmp_path, fixture):
    path, _, _ = _write(tmp_path, fixture, "ovi")
    model = load_fusion_dit(path, weight_dtype=torch.bfloat16, compute_dtype=torch.bfloat16)
    assert model.compute_dtype == torch.bfloat16
    for name, p in model.state_dict().items():
        layer_weight = _is_layer_weight(name, p)
        assert p.dtype == (torch.bfloat16 if layer_weight else torch.float32), name

    fp8 = load_fusion_dit(path, weight_dtype=torch.float8_e4m3fn)
    q = fp8.audio_model.blocks[0].cross_attn.q
    w = fixture["weights"]["audio_model.blocks.0.cross_attn.q.weight"]
    assert q.weight.dtype == torch.float8_e4m3fn
    assert torch.allclose(q.weight.float() * q.weight_scale, w, rtol=0.07, atol=1e-3)  # e4m3: 3 mantissa bits


def test_save_then_load_round_trips_config_and_tensors_bit_exact(tmp_path, fixture):
    path, _, _ = _write(tmp_path, fixture, "fp8-scaled")
    model = load_fusion_dit(path)
    save_fusion_dit(model, tmp_path / "again.safetensors")
    again = load_fusion_dit(tmp_path / "again.safetensors")
    assert again.config == model.config
    a, b = model.state_dict(), again.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k].float(), b[k].float()), k


def test_file_without_stored_config_needs_one_when_heads_cannot_be_inferred(fixture):
    path = fixture["folder"] / "weights.safetensors"  # Ovi's own layout, no metadata
    dim = fixture["config"].video.dim
    if dim % 128 == 0:
        pytest.skip(f"fixture width {dim} is a multiple of 128: heads are inferred as for Ovi")
    with pytest.raises(CheckpointKindError) as e:
        load_fusion_dit(path)
    msg = str(e.value)
    assert str(path) in msg and "heads" in msg and f"width {dim}" in msg and CONFIG_METADATA_KEY in msg
    assert load_fusion_dit(path, config=fixture["config"]).config == fixture["config"]


def test_metadata_that_disagrees_with_the_shapes_is_an_error(tmp_path, fixture):
    cfg = fixture["config"].to_dict()
    cfg["video"]["ffn_dim"] += 8
    path = tmp_path / "lying.safetensors"
    save_file(fixture["weights"], str(path), metadata={CONFIG_METADATA_KEY: json.dumps(cfg)})
    with pytest.raises(CheckpointKeyError) as e:
        load_fusion_dit(path)
    msg = str(e.value)
    found = fixture["config"].video.ffn_dim
    assert str(path) in msg and f"video.ffn_dim: metadata {found + 8}, shapes {found}" in msg


# --- real size, on the meta device --------------------------------------------------------------

def test_layout_rules_reproduce_the_fixture_key_names_and_shapes(fixture):
    # Anchors ovi_keys' shape rules in the reference's own file before they are used at full size.
    expected = {k: tuple(v.shape) for k, v in fixture["weights"].items()}
    assert fusion_shapes(fixture["config"]) == expected


def test_full_size_ovi_state_dict_loads_into_the_real_size_model():
    shapes = fusion_shapes(FusionConfig.ovi())
    # Real Ovi facts, independent of any config object: width 3072, 30 blocks, 4096-d umT5 text, ...
    assert shapes["video_model.patch_embedding.weight"] == (3072, 48, 1, 2, 2)
    assert shapes["video_model.blocks.29.ffn.0.weight"] == (14336, 3072)
    assert shapes["audio_model.patch_embedding.0.weight"] == (3072, 20, 7)
    assert shapes["audio_model.patch_embedding.2.w1.weight"] == (8192, 3072, 7)
    assert shapes["audio_model.blocks.29.modulation.modulation"] == (1, 6, 3072)
    assert shapes["video_model.text_embedding.0.weight"] == (3072, 4096)
    assert shapes["video_model.head.head.weight"] == (192, 3072)
    assert shapes["audio_model.head.head.weight"] == (20, 3072)
    assert "video_model.blocks.30.ffn.0.weight" not in shapes
    assert 11.0e9 < sum(math.prod(s) for s in shapes.values()) < 12.0e9  # Ovi is an 11B model

    config = infer_fusion_config(shapes)
    assert config == FusionConfig.ovi()
    model = FusionDiT(config, device="meta")
    model_shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert sorted(set(shapes) - set(model_shapes)) == []  # no unexpected key
    assert sorted(set(model_shapes) - set(shapes)) == []  # no missing key
    assert [k for k in shapes if shapes[k] != model_shapes[k]] == []  # no mis-shaped key
    state = {k: torch.empty(s, device="meta", dtype=torch.bfloat16) for k, s in shapes.items()}
    model.load_state_dict(state, strict=True, assign=True)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_full_size_repackaged_header_is_detected_without_reading_data():
    shapes = fusion_shapes(FusionConfig.ovi())
    tensors = {f"model.diffusion_model.{k}": TensorInfo(s, torch.bfloat16) for k, s in shapes.items()}
    tensors["scaled_fp8"] = TensorInfo((0,), torch.float8_e4m3fn)
    header = CheckpointHeader(path="ovi_comfy.safetensors", format="safetensors", tensors=tensors)
    layout = detect_fusion_layout(header)
    assert layout.prefix == "model.diffusion_model." and layout.ignored == ("scaled_fp8",)
    inferred = infer_fusion_config({layout.model_keys[k]: tensors[k].shape for k in layout.model_keys})
    assert inferred == FusionConfig.ovi()


# --- files that are not this model --------------------------------------------------------------

def _other_model(fixture, kind: str) -> dict[str, torch.Tensor]:
    w = fixture["weights"]
    if kind == "wan-single-tower":  # a plain Wan DiT: the video tower's keys at the root, no audio tower
        return {k[len("video_model."):]: v for k, v in w.items() if k.startswith("video_model.")}
    if kind == "video-tower-only":
        return {k: v for k, v in w.items() if k.startswith("video_model.")}
    if kind == "sd-unet":
        return {"model.diffusion_model.input_blocks.0.0.weight": torch.ones(8, 4, 3, 3),
                "model.diffusion_model.middle_block.0.in_layers.0.weight": torch.ones(8)}
    if kind == "wan-vae":
        return {"encoder.conv1.weight": torch.ones(4, 3, 3, 3, 3), "decoder.upsamples.0.residual.0.gamma": torch.ones(4),
                "conv1.weight": torch.ones(4, 4, 1, 1, 1), "conv2.weight": torch.ones(4, 4, 1, 1, 1)}
    return {"foo.bar": torch.ones(3), "baz": torch.ones(2, 2)}


@pytest.mark.parametrize("kind, found", [
    ("wan-single-tower", "single-tower Wan"),
    ("video-tower-only", "only the video tower"),
    ("sd-unet", "Stable Diffusion-style UNet"),
    ("wan-vae", "Wan VAE"),
    ("random", "unrecognised keys"),
])
def test_a_checkpoint_of_another_model_says_what_it_looks_like(tmp_path, fixture, kind, found):
    path = tmp_path / f"{kind}.safetensors"
    save_file(_other_model(fixture, kind), str(path))
    with pytest.raises(CheckpointKindError) as e:
        load_fusion_dit(path)
    msg = str(e.value)
    assert str(path) in msg and found in msg and "expected an Ovi fusion DiT" in msg
    if kind in ("wan-single-tower", "video-tower-only"):
        assert "no audio_model." in msg


def test_a_missing_tensor_is_named_with_its_expected_shape(tmp_path, fixture):
    w = dict(fixture["weights"])
    last = fixture["config"].num_layers - 1
    name = f"video_model.blocks.{last}.self_attn.q.weight"
    shape = list(w.pop(name).shape)
    path = tmp_path / "missing.safetensors"
    save_file({f"model.diffusion_model.{k}": v for k, v in w.items()}, str(path),
              metadata=_meta(fixture["config"]))
    with pytest.raises(CheckpointKeyError) as e:
        load_fusion_dit(path)
    msg = str(e.value)
    assert str(path) in msg and "1 missing" in msg
    assert f"missing    model.diffusion_model.{name} (expected {shape})" in msg


def test_a_mis_shaped_tensor_is_named_with_found_and_expected_shapes(tmp_path, fixture):
    w = dict(fixture["weights"])
    name = "audio_model.blocks.0.cross_attn.k_fusion.weight"
    shape = list(w[name].shape)
    w[name] = torch.zeros(shape[0], shape[1] + 1)
    path = tmp_path / "misshaped.safetensors"
    save_file(w, str(path), metadata=_meta(fixture["config"]))
    with pytest.raises(CheckpointKeyError) as e:
        load_fusion_dit(path)
    msg = str(e.value)
    assert str(path) in msg and "1 mis-shaped" in msg
    assert f"{name}: found {[shape[0], shape[1] + 1]}, expected {shape}" in msg


def test_an_unexpected_tensor_is_named(tmp_path, fixture):
    w = dict(fixture["weights"])
    w["video_model.blocks.0.lora_down.weight"] = torch.zeros(4, 2)
    path = tmp_path / "extra.safetensors"
    save_file(w, str(path), metadata=_meta(fixture["config"]))
    with pytest.raises(CheckpointKeyError) as e:
        load_fusion_dit(path)
    assert str(path) in str(e.value) and "unexpected video_model.blocks.0.lora_down.weight (found [4, 2])" in str(e.value)
