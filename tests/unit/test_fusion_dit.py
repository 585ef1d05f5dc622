"""Behaviour of the fusion DiT that callers (sampler, loader, nodes) rely on, on tiny random models."""

from __future__ import annotations

import json
import re

import pytest
import torch
import torch.nn.functional as F

from jointav.errors import BackendUnavailableError, InputShapeError, InputValueError
from jointav.models.attention import available_backends
from jointav.models.config import FusionConfig, TowerConfig
from jointav.models.fusion_dit import FusionDiT
from jointav.models.layers import CastLinear

from conftest import FIXTURES, load_tensors

TINY = FusionConfig(
    video=TowerConfig(patch_size=(1, 2, 2), in_dim=6, out_dim=6, dim=32, ffn_dim=48, freq_dim=32,
                      num_heads=2, num_layers=3, text_len=16, text_dim=24),
    audio=TowerConfig(patch_size=(1,), in_dim=5, out_dim=5, dim=32, ffn_dim=48, freq_dim=32,
                      num_heads=2, num_layers=3, text_len=16, text_dim=24, temporal_rope_scaling_factor=0.19676),
)
ATOL = 1e-5


def _model(seed: int = 0, **kwargs) -> FusionDiT:
    torch.manual_seed(seed)
    model = FusionDiT(TINY, **kwargs).eval()
    # Random biases and norm gains too, so that no path is trivially an identity or zero.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1:
                p.copy_(1 + 0.1 * torch.randn_like(p) if re.search(r"norm", name) else 0.05 * torch.randn_like(p))
    return model


def _video(f: int, h: int, w: int, seed: int) -> torch.Tensor:
    return torch.randn(TINY.video.in_dim, f, h, w, generator=torch.Generator().manual_seed(seed))


def _audio(length: int, seed: int) -> torch.Tensor:
    return torch.randn(length, TINY.audio.in_dim, generator=torch.Generator().manual_seed(seed))


def _context(length: int, seed: int) -> torch.Tensor:
    return torch.randn(length, TINY.video.text_dim, generator=torch.Generator().manual_seed(seed))


def _batch(b: int = 2, f: int = 3, h: int = 4, w: int = 6, length: int = 11):
    """Tensor-form inputs: video [B, C, F, H, W], audio [B, L, C], t [B], contexts [B, Lt, text_dim]."""
    video = torch.stack([_video(f, h, w, i) for i in range(b)])
    audio = torch.stack([_audio(length, 10 + i) for i in range(b)])
    t = torch.tensor([900, 250][:b] + [500] * max(0, b - 2))
    vctx = torch.stack([_context(7, 20 + i) for i in range(b)])
    actx = torch.stack([_context(7, 30 + i) for i in range(b)])
    return video, audio, t, vctx, actx


@pytest.fixture(scope="module")
def model():
    return _model()


def _close(a, b, atol=ATOL):
    if isinstance(a, (list, tuple)):
        return all(_close(x, y, atol) for x, y in zip(a, b)) and len(a) == len(b)
    return a.shape == b.shape and torch.allclose(a, b, atol=atol, rtol=0)


@torch.no_grad()
def test_items_of_different_sizes_in_one_batch_match_each_item_alone(model):
    videos = [_video(3, 4, 6, 1), _video(2, 4, 4, 2), _video(1, 2, 2, 3)]
    audios = [_audio(13, 4), _audio(9, 5), _audio(4, 6)]
    vctx = [_context(5, 7), _context(9, 8), _context(1, 9)]
    actx = [_context(3, 10), _context(11, 11), _context(16, 12)]
    t = torch.tensor([999, 500, 3])
    v_out, a_out = model(videos, audios, t, vctx, actx, first_frame_is_clean=True)
    assert isinstance(v_out, list) and isinstance(a_out, list)
    for i in range(3):
        v1, a1 = model([videos[i]], [audios[i]], t[i : i + 1], [vctx[i]], [actx[i]], first_frame_is_clean=True)
        assert v_out[i].shape == videos[i].shape and a_out[i].shape == audios[i].shape
        assert _close(v_out[i], v1[0]) and _close(a_out[i], a1[0]), f"item {i} differs when batched"


def test_items_of_one_size_in_one_batch_match_each_item_alone_with_gradients(model):
    # Equal shapes take the batch-wide copies (tokens, clean mask, RoPE, unpatchify); values and gradients must
    # be each item's own as the per-item path gives them (forced there by a second item of another size).
    videos = [_video(3, 4, 6, i).requires_grad_() for i in range(3)]
    audios = [_audio(11, 10 + i).requires_grad_() for i in range(3)]
    vctx, actx = [_context(7, 20 + i) for i in range(3)], [_context(5, 30 + i) for i in range(3)]
    t = torch.tensor([999, 500, 3])
    clean = torch.tensor([[True, False, False], [True, True, False], [False, False, False]])
    v_out, a_out = model(torch.stack(videos), torch.stack(audios), t, vctx, actx, video_clean=clean)
    (v_out.square().sum() + a_out.square().sum()).backward()
    for i in range(3):
        v, a = videos[i].detach().requires_grad_(), audios[i].detach().requires_grad_()
        other_clean = torch.zeros(1, 3, dtype=torch.bool)
        v1, a1 = model([v, _video(2, 4, 4, 99)], [a, _audio(9, 98)], t[[i, i]], [vctx[i], vctx[i]], [actx[i], actx[i]],
                       video_clean=torch.cat([clean[i : i + 1], other_clean]))
        (v1[0].square().sum() + a1[0].square().sum()).backward()
        assert _close(v_out[i], v1[0]) and _close(a_out[i], a1[0]), f"item {i} differs when batched"
        assert _close(videos[i].grad, v.grad, 1e-4) and _close(audios[i].grad, a.grad, 1e-4), f"item {i}: gradients"


@torch.no_grad()
def test_padding_to_longer_sequences_never_changes_the_output(model):
    video, audio, t, vctx, actx = _batch()
    tokens = video.shape[2] * (video.shape[3] // 2) * (video.shape[4] // 2)
    base = model(video, audio, t, vctx, actx)
    padded = model(video, audio, t, vctx, actx, video_seq_len=tokens + 7, audio_seq_len=audio.shape[1] + 5)
    assert _close(base, padded)


@torch.no_grad()
def test_tensor_and_list_forms_agree_and_keep_their_form(model):
    video, audio, t, vctx, actx = _batch()
    v_t, a_t = model(video, audio, t, vctx, actx)
    v_l, a_l = model(list(video), list(audio), t, list(vctx), list(actx))
    assert isinstance(v_t, torch.Tensor) and v_t.shape == video.shape and a_t.shape == audio.shape
    assert isinstance(v_l, list) and isinstance(a_l, list)
    assert _close(v_t, torch.stack(v_l)) and _close(a_t, torch.stack(a_l))


@torch.no_grad()
def test_a_scalar_timestep_equals_the_same_timestep_per_sample(model):
    video, audio, _, vctx, actx = _batch()
    expected = model(video, audio, torch.tensor([640, 640]), vctx, actx)
    assert _close(model(video, audio, 640, vctx, actx), expected)
    assert _close(model(video, audio, torch.tensor(640.0), vctx, actx), expected)


@torch.no_grad()
def test_skip_layer_skips_a_block_and_off_values_agree(model):
    video, audio, t, vctx, actx = _batch()
    base = model(video, audio, t, vctx, actx)
    for off in (None, False, 0):  # 0 is off, as in the reference: block 0 cannot be skipped
        assert _close(model(video, audio, t, vctx, actx, skip_layer=off), base)
    skipped = model(video, audio, t, vctx, actx, skip_layer=1)
    assert not torch.allclose(skipped[0], base[0], atol=1e-3) and not torch.allclose(skipped[1], base[1], atol=1e-3)
    assert not _close(model(video, audio, t, vctx, actx, skip_layer=2), skipped)


@torch.no_grad()
def test_video_clean_on_frame_zero_equals_first_frame_is_clean(model):
    video, audio, t, vctx, actx = _batch()
    mask = torch.zeros(video.shape[0], video.shape[2], dtype=torch.bool)
    mask[:, 0] = True
    via_flag = model(video, audio, t, vctx, actx, first_frame_is_clean=True)
    via_mask = model(video, audio, t, vctx, actx, video_clean=mask)
    assert _close(via_flag, via_mask)
    assert not torch.allclose(via_flag[0], model(video, audio, t, vctx, actx)[0], atol=1e-3)


@torch.no_grad()
def test_clean_masks_act_per_token(model):
    video, audio, t, vctx, actx = _batch()
    base = model(video, audio, t, vctx, actx)
    none_clean = model(video, audio, t, vctx, actx, video_clean=torch.zeros(2, video.shape[2], dtype=torch.bool),
                       audio_clean=torch.zeros(2, audio.shape[1], dtype=torch.bool))
    assert _close(none_clean, base)
    # Every token clean is the same as timestep 0 everywhere.
    all_clean = model(video, audio, t, vctx, actx, video_clean=torch.ones(2, video.shape[2], dtype=torch.bool),
                      audio_clean=torch.ones(2, audio.shape[1], dtype=torch.bool))
    assert _close(all_clean, model(video, audio, torch.zeros(2), vctx, actx))
    # A partly clean audio changes the audio output.
    some = torch.zeros(2, audio.shape[1], dtype=torch.bool)
    some[:, :4] = True
    assert not torch.allclose(model(video, audio, t, vctx, actx, audio_clean=some)[1], base[1], atol=1e-3)


def _bad_inputs():
    video, audio, t, vctx, actx = _batch()
    ok = dict(video=video, audio=audio, t=t, video_context=vctx, audio_context=actx)
    return [
        ("video", dict(ok, video=video[:, :-1])),  # wrong channel count
        ("audio", dict(ok, audio=audio[..., :-1])),
        ("audio", dict(ok, audio=audio[:1])),  # batch mismatch
        ("t", dict(ok, t=torch.tensor([1, 2, 3]))),
        ("video_context", dict(ok, video_context=vctx[:1])),
        ("audio_context", dict(ok, audio_context=list(actx) + [actx[0]])),
        ("video", dict(ok, video=video[..., :5])),  # W not divisible by the patch
        ("video", dict(ok, video=video[:, :, :, :3])),  # H not divisible by the patch
        ("video_context", dict(ok, video_context=vctx[..., :-2])),  # width != text_dim
        ("audio_context", dict(ok, audio_context=torch.zeros(2, TINY.audio.text_len + 1, TINY.audio.text_dim))),
        ("video", dict(ok, video=video[0])),  # a single sample without the batch axis
        ("video_seq_len", dict(ok, video_seq_len=3)),
        ("video_clean", dict(ok, video_clean=torch.zeros(2, 1, dtype=torch.bool))),
    ]


@pytest.mark.parametrize("argument, kwargs", _bad_inputs(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_shapes_raise_input_shape_errors_naming_the_argument(model, argument, kwargs):
    with pytest.raises(InputShapeError) as err:
        model(**kwargs)
    message = str(err.value)
    assert message.startswith(argument), message
    assert re.search(r"\d", message), message  # the sizes found/expected are in the message


@pytest.mark.parametrize("skip", [-1, 3, True, 1.5])
def test_out_of_range_skip_layer_is_rejected(model, skip):
    with pytest.raises(InputValueError, match="skip_layer"):
        model(*_batch(), skip_layer=skip)


def test_unknown_or_unavailable_attention_backend_fails_clearly():
    with pytest.raises(InputValueError, match="attention_backend"):
        FusionDiT(TINY, attention_backend="fastest")
    # A known name is accepted at construction and checked against the input's device at run time.
    model = FusionDiT(TINY, attention_backend="flash", device="meta")
    assert model.attention_backend == "flash"
    if "flash" not in available_backends("cpu"):
        with pytest.raises(BackendUnavailableError, match="flash"):
            _model(attention_backend="flash")(*_batch())


@torch.no_grad()
def test_meta_build_then_assign_load_gives_the_same_model(model):
    meta = FusionDiT(TINY, device="meta")
    assert all(p.is_meta for p in meta.parameters())
    meta.load_state_dict(model.state_dict(), assign=True)
    assert not any(p.is_meta for p in meta.parameters()) and not any(b.is_meta for b in meta.buffers())
    assert _close(meta.eval()(*_batch()), model(*_batch()), atol=0)


def test_real_size_builds_on_meta_with_the_reference_keys_and_ovi_size():
    # (how long the build takes is a figure of `jointav bench build`, not a test)
    model = FusionDiT(FusionConfig.ovi(), device="meta", dtype=torch.bfloat16)
    state = model.state_dict()
    count = sum(p.numel() for p in model.parameters())
    assert 10.5e9 < count < 12.5e9  # Ovi is an ~11B model (two ~5B towers + fusion projections)
    assert not list(model.buffers())  # RoPE tables are not state
    # Layout of the real checkpoint (ovi/configs/model/dit/{video,audio}.json).
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    assert shapes["video_model.patch_embedding.weight"] == (3072, 48, 1, 2, 2)
    assert shapes["video_model.blocks.29.ffn.0.weight"] == (14336, 3072)
    assert shapes["audio_model.patch_embedding.2.w1.weight"] == (8192, 3072, 7)
    assert shapes["video_model.head.head.weight"] == (4 * 48, 3072)
    assert shapes["audio_model.blocks.0.cross_attn.k_fusion.weight"] == (3072, 3072)
    assert "video_model.blocks.30.self_attn.q.weight" not in shapes
    # Same key set as the reference fixture's state dict, block indices aside.
    weights = FIXTURES / "fusion_dit" / "weights.safetensors"
    if weights.is_file():
        def pattern(keys):
            return {re.sub(r"\.blocks\.\d+\.", ".blocks.N.", k) for k in keys}
        assert pattern(state) == pattern(load_tensors(weights))


@torch.no_grad()
def test_storage_dtype_is_independent_of_compute_dtype():
    reference = _model()
    with torch.no_grad():  # float32 weights holding exactly the bf16-representable values
        for p in reference.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    stored_bf16 = FusionDiT(TINY, dtype=torch.bfloat16).eval()
    stored_bf16.load_state_dict(reference.state_dict())
    assert next(stored_bf16.parameters()).dtype == torch.bfloat16
    out = stored_bf16(*_batch())  # computes in float32 (the default compute dtype)
    assert out[0].dtype == torch.float32
    assert _close(out, reference(*_batch()))


@torch.no_grad()
def test_bf16_compute_stays_close_to_fp32():
    """bf16 compute drifts by well under 5% relative L2 on the tiny models (documented in the print)."""
    folder = FIXTURES / "fusion_dit"
    if (folder / "weights.safetensors").is_file():
        from jointav.parity.fusion_dit import case_arguments, fusion_config

        config = json.loads((folder / "config.json").read_text())
        model = FusionDiT(fusion_config(config)).eval()
        model.load_state_dict(load_tensors(folder / "weights.safetensors"))
        case = next(iter(config["cases"].values()))
        args, kwargs = (), case_arguments(case["forward_kwargs"], load_tensors(folder / "inputs.safetensors"))
        which = "fixture model"
    else:
        model, args, kwargs, which = _model(), _batch(), {}, "random tiny model (fixtures absent)"
    fp32 = model(*args, **kwargs)
    model.compute_dtype = torch.bfloat16
    bf16 = model(*args, **kwargs)
    model.compute_dtype = torch.float32
    for name, a, b in zip(("video", "audio"), bf16, fp32):
        a, b = torch.stack(list(a)), torch.stack(list(b))
        assert a.dtype == b.dtype and torch.isfinite(a).all()
        rel = float((a - b).norm() / b.norm())
        print(f"{which}: bf16 vs fp32 relative L2 drift ({name}): {rel:.4f}")
        assert 0 < rel < 0.05


def test_compute_dtype_rejects_non_compute_types(model):
    with pytest.raises(InputValueError, match="compute_dtype"):
        model.compute_dtype = torch.float8_e4m3fn


def test_cast_linear_runs_fp8_weights_with_a_scale_in_the_input_dtype():
    torch.manual_seed(0)
    weight = torch.randn(8, 16) * 3
    scale = weight.abs().max() / 448.0  # float8_e4m3fn range
    layer = CastLinear(16, 8, dtype=torch.float8_e4m3fn)
    assert "weight_scale" not in layer.state_dict()  # absent until a loader sets it
    with torch.no_grad():
        layer.weight.copy_((weight / scale).to(torch.float8_e4m3fn))
        layer.bias = torch.nn.Parameter(torch.randn(8))
    layer.weight_scale = scale
    x = torch.randn(3, 16)
    dequantised = layer.weight.float() * scale
    y = layer(x)
    assert y.dtype == torch.float32
    assert torch.allclose(y, F.linear(x, dequantised, layer.bias), atol=1e-5)
    assert layer(x.to(torch.bfloat16)).dtype == torch.bfloat16


def test_towers_of_different_width_are_rejected_at_construction():
    from dataclasses import replace

    with pytest.raises(InputValueError, match="dim and num_heads"):
        FusionDiT(FusionConfig(video=TINY.video, audio=replace(TINY.audio, dim=48, num_heads=2)), device="meta")


class _StopAfter:
    """A host's interrupt check that asks to stop once `blocks` blocks have started."""

    def __init__(self, blocks: int):
        self.blocks, self.calls = blocks, 0

    def __call__(self) -> None:
        self.calls += 1
        if self.calls > self.blocks:
            raise KeyboardInterrupt(f"stop requested after {self.blocks} blocks")


@torch.no_grad()
def test_the_block_check_runs_before_every_block_and_can_stop_a_forward_midway():
    model = _model()
    video, audio, t, vctx, actx = _batch()
    layers = model.config.num_layers
    assert layers >= 3
    check = _StopAfter(layers)  # never stops a whole forward: one call per block
    model.block_check = check
    expected = model(video, audio, t, vctx, actx)
    assert check.calls == layers
    check = _StopAfter(1)
    model.block_check = check
    with pytest.raises(KeyboardInterrupt, match="after 1 blocks"):
        model(video, audio, t, vctx, actx)
    assert check.calls == 2, "the stop request was not seen at the second block"
    model.block_check = None
    assert _close(model(video, audio, t, vctx, actx), expected), "the check changed the output"
