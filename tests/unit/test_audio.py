"""Audio decoding side without fixtures: tiny random MMAudio VAE / BigVGAN, loaders, finishing and file I/O."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import save_file
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from jointav.audio import io as audio_io
from jointav.audio.alias_free import Activation1d, kaiser_sinc_filter
from jointav.audio.bigvgan import BigVGANConfig, BigVGANVocoder, fold_weight_norm
from jointav.audio.finishing import finish_audio, peak_safe_gain, resample, resampled_length, to_channels
from jointav.audio.mmaudio_vae import (MMAudioVAE, MMAudioVAEConfig, MelExtractor, decode_audio_latent,
                                       encode_audio, normalize_mpconv_weight)
from jointav.errors import (CheckpointFileError, CheckpointKeyError, CheckpointKindError, InputShapeError,
                            InputValueError)
from jointav.model_loader.audio_files import (apply_bigvgan_weights, apply_vae_weights, infer_bigvgan_config,
                                              infer_vae_config, load_bigvgan, load_mmaudio_vae, read_state_dict,
                                              vae_weight_form)

VAE_CFG = MMAudioVAEConfig(data_dim=80, embed_dim=20, hidden_dim=8)
VOC_CFG = BigVGANConfig(upsample_rates=(4, 2), upsample_kernel_sizes=(8, 4), upsample_initial_channel=16,
                        resblock_kernel_sizes=(3, 5), resblock_dilation_sizes=((1, 3, 5), (1, 3, 5)))


def _raw_vae_state(cfg: MMAudioVAEConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    """A stored-form checkpoint: free MPConv weights ~N(0,1), small gains, the real mel statistics."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, t in MMAudioVAE(cfg).state_dict().items():
        if key.startswith("data_"):
            sd[key] = t.clone()
        elif key.endswith("learnable_gain"):
            sd[key] = 0.2 * torch.randn((), generator=g)
        else:
            sd[key] = torch.randn(t.shape, generator=g)
    return sd


def _weight_normed_vocoder_state(cfg: BigVGANConfig, seed: int = 0, legacy: bool = False) -> dict[str, torch.Tensor]:
    """A BigVGAN checkpoint in weight-norm form (g, v) as training writes it."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, t in BigVGANVocoder(cfg).state_dict().items():
        if key.endswith(".weight"):
            base = key[: -len(".weight")]
            g_key, v_key = (f"{base}.weight_g", f"{base}.weight_v") if legacy else (
                f"{base}.parametrizations.weight.original0", f"{base}.parametrizations.weight.original1")
            sd[v_key] = torch.randn(t.shape, generator=g)
            sd[g_key] = 0.4 + 0.4 * torch.rand((t.shape[0],) + (1,) * (t.ndim - 1), generator=g)
        else:
            sd[key] = 0.1 * torch.randn(t.shape, generator=g)
    return sd


@pytest.fixture(scope="module")
def vae() -> MMAudioVAE:
    model = MMAudioVAE(VAE_CFG)
    apply_vae_weights(model, _raw_vae_state(VAE_CFG))
    return model.eval()


@pytest.fixture(scope="module")
def vocoder() -> BigVGANVocoder:
    model = BigVGANVocoder(VOC_CFG)
    apply_bigvgan_weights(model, _weight_normed_vocoder_state(VOC_CFG))
    return model.eval()


# --- shapes and the DiT layout --------------------------------------------------------------------


def test_decode_audio_latent_maps_time_major_latents_to_a_bounded_16k_waveform(vae, vocoder):
    latent = torch.randn(2, 5, VAE_CFG.embed_dim)  # [B, L, C] as the DiT emits it
    wav = decode_audio_latent(vae, vocoder, latent)
    assert wav.shape == (2, 1, 5 * 2 * VOC_CFG.hop_length)
    assert torch.isfinite(wav).all() and wav.abs().max() <= 1.0
    # the same clip through the channels-first VAE call gives the same audio
    with torch.no_grad():
        direct = vocoder(vae.decode(latent.transpose(1, 2)))
    torch.testing.assert_close(wav, direct)


def test_vae_decode_doubles_time_and_encode_halves_it(vae):
    with torch.no_grad():
        mel = vae.decode(torch.randn(1, VAE_CFG.embed_dim, 7))
        assert mel.shape == (1, VAE_CFG.data_dim, 14)
        z = vae.encode(mel)
        assert z.shape == (1, VAE_CFG.embed_dim, 7)
        assert torch.isfinite(vae.decode(z)).all()


def test_encode_audio_gives_one_latent_per_512_samples_at_any_input_rate(vae):
    g = torch.Generator().manual_seed(3)
    wav16 = 0.3 * torch.randn(1, 1, 2000, generator=g)
    z = encode_audio(vae, wav16)
    assert z.shape == (1, math.ceil(2000 / 512), VAE_CFG.embed_dim)  # time-major, DiT layout
    assert torch.isfinite(z).all()
    stereo48 = 0.3 * torch.randn(1, 2, 6000, generator=g)  # 0.125 s at 48 kHz = 2000 samples at 16 kHz
    assert encode_audio(vae, stereo48, sample_rate=48_000).shape == z.shape


def test_mel_extractor_frames_and_range():
    mel = MelExtractor()(torch.zeros(2, 256 * 6))
    assert mel.shape == (2, 80, 6)
    assert torch.allclose(mel, torch.full_like(mel, -5.0))  # silence hits the 1e-5 floor: log10 = -5


# --- input validation -----------------------------------------------------------------------------


def test_wrong_latent_channel_count_is_rejected_with_found_and_expected(vae, vocoder):
    with pytest.raises(InputShapeError, match=r"\(1, 9, 16\).*\[B, L, 20\]"):
        decode_audio_latent(vae, vocoder, torch.randn(1, 9, 16))
    with pytest.raises(InputShapeError, match=r"\(1, 16, 9\).*\[B, 20, L\]"):
        vae.decode(torch.randn(1, 16, 9))


def test_video_latent_is_rejected_by_the_audio_decoder(vae, vocoder):
    video = torch.randn(1, 48, 2, 4, 4)
    with pytest.raises(InputShapeError, match="video latent"):
        decode_audio_latent(vae, vocoder, video)
    with pytest.raises(InputShapeError, match="video latent"):
        vae.decode(video)


def test_channels_first_latent_gets_a_layout_hint(vae, vocoder):
    with pytest.raises(InputShapeError, match="channels-first"):
        decode_audio_latent(vae, vocoder, torch.randn(1, 20, 6))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_latent_is_rejected(vae, vocoder, bad):
    latent = torch.randn(1, 4, 20)
    latent[0, 2, 3] = bad
    with pytest.raises(InputValueError, match="1 non-finite"):
        decode_audio_latent(vae, vocoder, latent)


def test_decoder_only_vae_refuses_to_encode():
    model = MMAudioVAE(VAE_CFG, with_encoder=False)
    apply_vae_weights(model, _raw_vae_state(VAE_CFG))  # encoder.* keys of the file are skipped
    assert "encoder.conv_in.weight" not in model.state_dict()
    with pytest.raises(InputValueError, match="without its encoder"):
        model.encode(torch.zeros(1, 80, 4))


# --- weight forms -----------------------------------------------------------------------------------


def test_mpconv_normalisation_gives_unit_rows_and_ignores_the_stored_scale():
    w = torch.randn(6, 4, 3) * torch.tensor([0.5, 1, 2, 4, 8, 16]).view(-1, 1, 1) * 10
    n = normalize_mpconv_weight(w)
    row = n.flatten(1).norm(dim=1)
    assert (row < 1).all() and torch.allclose(row, torch.ones(6), atol=1e-3)
    torch.testing.assert_close(normalize_mpconv_weight(3 * w), n, atol=1e-5, rtol=1e-4)


def test_vae_weight_form_is_detected_and_normalised_once():
    raw = _raw_vae_state(VAE_CFG)
    assert vae_weight_form(raw) == "raw"
    a = MMAudioVAE(VAE_CFG)
    assert apply_vae_weights(a, raw) == "raw"
    effective = a.state_dict()
    assert vae_weight_form(effective) == "effective"
    b = MMAudioVAE(VAE_CFG)
    assert apply_vae_weights(b, effective) == "effective"
    for key, value in a.state_dict().items():
        assert torch.equal(b.state_dict()[key], value), key  # not normalised a second time
    mixed = dict(effective, **{"decoder.conv_in.weight": raw["decoder.conv_in.weight"]})
    with pytest.raises(CheckpointKeyError, match="decoder.conv_in.weight"):
        vae_weight_form(mixed)


@pytest.mark.parametrize("transposed", [False, True])
def test_fold_weight_norm_equals_torch_weight_norm(transposed):
    torch.manual_seed(0)
    conv = (nn.ConvTranspose1d(6, 4, 4, 2) if transposed else nn.Conv1d(6, 4, 5))
    conv = weight_norm(conv)
    with torch.no_grad():
        conv.parametrizations.weight.original0.mul_(torch.rand_like(conv.parametrizations.weight.original0) + 0.5)
    sd = conv.state_dict()
    folded = fold_weight_norm(sd)
    assert set(folded) == {"weight", "bias"}
    torch.testing.assert_close(folded["weight"], conv.weight.detach())
    legacy = {"weight_g": sd["parametrizations.weight.original0"], "weight_v": sd["parametrizations.weight.original1"],
              "bias": sd["bias"]}
    torch.testing.assert_close(fold_weight_norm(legacy)["weight"], conv.weight.detach())


def test_vocoder_loads_all_three_weight_layouts_to_the_same_model():
    parametrized = _weight_normed_vocoder_state(VOC_CFG, seed=5)
    legacy = _weight_normed_vocoder_state(VOC_CFG, seed=5, legacy=True)
    folded = fold_weight_norm(parametrized)
    mel = torch.randn(1, 80, 6)
    outs = []
    for sd in (parametrized, legacy, folded):
        model = BigVGANVocoder(VOC_CFG)
        apply_bigvgan_weights(model, sd)
        with torch.no_grad():
            outs.append(model(mel))
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(outs[2], outs[0])


# --- anti-aliased activation --------------------------------------------------------------------------


def test_kaiser_sinc_filter_is_a_symmetric_unit_gain_lowpass():
    taps = kaiser_sinc_filter(0.25, 0.3, 12).flatten()
    assert taps.shape == (12,)
    assert torch.isclose(taps.sum(), torch.tensor(1.0))
    torch.testing.assert_close(taps, taps.flip(0))
    response = torch.fft.rfft(taps, n=512).abs()
    assert response[0] > 0.99 and response[-1] < 0.05  # passes DC, stops Nyquist


def test_activation1d_keeps_length_and_passes_a_slow_signal_through_identity():
    act = Activation1d(nn.Identity())
    t = torch.arange(200, dtype=torch.float32)
    x = torch.sin(2 * math.pi * t / 50).view(1, 1, -1)
    y = act(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y[..., 20:-20], x[..., 20:-20], atol=2e-2, rtol=0)


def test_bigvgan_config_round_trip_and_unsupported_variants():
    assert BigVGANConfig.from_dict(VOC_CFG.to_dict()) == VOC_CFG
    assert BigVGANConfig().hop_length == 256
    with pytest.raises(InputValueError, match="resblock"):
        BigVGANConfig(resblock="2")
    with pytest.raises(InputValueError, match="activation"):
        BigVGANConfig(activation="snake")


# --- checkpoint files -----------------------------------------------------------------------------------


def test_vae_pth_and_safetensors_load_with_config_from_shapes(tmp_path, vae):
    raw = _raw_vae_state(VAE_CFG)
    torch.save(raw, tmp_path / "v1-16.pth")
    save_file(raw, str(tmp_path / "vae.safetensors"))
    assert infer_vae_config(raw) == VAE_CFG
    z = torch.randn(1, 20, 4)
    for name in ("v1-16.pth", "vae.safetensors"):
        loaded = load_mmaudio_vae(tmp_path / name)
        assert loaded.config == VAE_CFG and loaded.has_encoder
        with torch.no_grad():
            torch.testing.assert_close(loaded.decode(z), vae.decode(z))


def test_bigvgan_generator_pt_loads_with_config_from_shapes(tmp_path, vocoder):
    sd = _weight_normed_vocoder_state(VOC_CFG, legacy=True)
    torch.save({"generator": sd}, tmp_path / "best_netG.pt")
    assert infer_bigvgan_config(sd) == VOC_CFG
    loaded = load_bigvgan(tmp_path / "best_netG.pt")
    assert loaded.config == VOC_CFG
    mel = torch.randn(1, 80, 5)
    with torch.no_grad():
        torch.testing.assert_close(loaded(mel), vocoder(mel))


def test_swapped_files_raise_kind_errors_naming_both_models(tmp_path):
    save_file(_raw_vae_state(VAE_CFG), str(tmp_path / "vae.safetensors"))
    torch.save({"generator": _weight_normed_vocoder_state(VOC_CFG)}, tmp_path / "best_netG.pt")
    with pytest.raises(CheckpointKindError, match="found a MMAudio VAE.*expected a BigVGAN vocoder"):
        load_bigvgan(tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointKindError, match="found a BigVGAN vocoder.*expected a MMAudio VAE"):
        load_mmaudio_vae(tmp_path / "best_netG.pt")


def test_missing_and_misshaped_tensors_are_named(tmp_path):
    sd = _raw_vae_state(VAE_CFG)
    del sd["decoder.mid.block_2.conv1.weight"]
    torch.save(sd, tmp_path / "missing.pth")
    with pytest.raises(CheckpointKeyError, match="decoder.mid.block_2.conv1.weight"):
        load_mmaudio_vae(tmp_path / "missing.pth")

    voc = _weight_normed_vocoder_state(VOC_CFG)
    voc["resblocks.1.convs2.0.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointKeyError, match=r"resblocks.1.convs2.0.bias.*\(3,\).*\(8,\)"):
        apply_bigvgan_weights(BigVGANVocoder(VOC_CFG), voc)

    voc = _weight_normed_vocoder_state(VOC_CFG)
    del voc["conv_post.parametrizations.weight.original1"]
    with pytest.raises(CheckpointKeyError, match="conv_post.parametrizations.weight.original0"):
        apply_bigvgan_weights(BigVGANVocoder(VOC_CFG), voc)


class _Payload:
    def __reduce__(self):
        return (print, ("code ran",))


def test_pickles_that_run_code_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"decoder.learnable_gain": _Payload()}, f, protocol=2)
    with pytest.raises(CheckpointFileError, match="evil.pth"):
        read_state_dict(path)
    with pytest.raises(CheckpointFileError, match="absent.safetensors: checkpoint file not found"):
        read_state_dict(tmp_path / "absent.safetensors")


# --- finishing -------------------------------------------------------------------------------------------


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(rate * seconds), dtype=torch.float64) / rate
    return (amp * torch.sin(2 * math.pi * freq * t)).to(torch.float32).view(1, 1, -1)


@pytest.mark.parametrize("rate_out", [44_100, 48_000])
@pytest.mark.parametrize("num_samples", [4608, 16_001])
def test_resampled_length_is_the_rounded_duration(rate_out, num_samples):
    out = resample(torch.zeros(2, 1, num_samples), 16_000, rate_out)
    assert out.shape == (2, 1, round(num_samples * rate_out / 16_000)) == (2, 1, resampled_length(num_samples, 16_000, rate_out))


@pytest.mark.parametrize("rate_out", [44_100, 48_000])
def test_resampling_keeps_a_1khz_tone_at_1khz(rate_out):
    out = resample(_sine(1000.0, 16_000, 1.0), 16_000, rate_out)[0, 0].numpy()
    spectrum = np.abs(np.fft.rfft(out * np.hanning(out.size)))
    peak_hz = np.argmax(spectrum) * rate_out / out.size
    assert abs(peak_hz - 1000.0) <= rate_out / out.size
    assert abs(np.abs(out[1000:-1000]).max() - 0.5) < 0.01  # amplitude kept


def test_peak_safe_gain_limits_loud_clips_and_leaves_quiet_ones():
    ceiling = 10 ** (-1.0 / 20)
    loud = _sine(440.0, 16_000, 0.1, amp=1.0) * 1.3
    quiet = _sine(440.0, 16_000, 0.1, amp=0.05)
    both = torch.cat([loud, quiet])
    out = peak_safe_gain(both, -1.0)
    assert out[0].abs().max() <= ceiling + 1e-6
    assert out[0].abs().max() >= ceiling - 1e-3
    torch.testing.assert_close(out[1], quiet[0])  # no boost: noise floor unchanged
    with pytest.raises(InputValueError, match="ceiling_dbfs=3"):
        peak_safe_gain(both, 3.0)


def test_finish_audio_returns_comfy_audio_stereo_with_bounded_peaks():
    wav = torch.tanh(3 * torch.randn(2, 1, 4608, generator=torch.Generator().manual_seed(0)))
    audio = finish_audio(wav, 16_000, target_rate=48_000, channels=2, ceiling_dbfs=-1.0)
    assert set(audio) == {"waveform", "sample_rate"} and audio["sample_rate"] == 48_000
    x = audio["waveform"]
    assert x.dtype == torch.float32 and x.shape == (2, 2, 13_824)
    assert torch.equal(x[:, 0], x[:, 1])
    assert x.abs().max() <= 10 ** (-1 / 20) + 1e-6


def test_channel_layout_and_bad_inputs():
    mono = torch.randn(1, 1, 10)
    assert torch.equal(to_channels(to_channels(mono, 2), 1), mono)
    with pytest.raises(InputShapeError, match="3 channels"):
        to_channels(torch.zeros(1, 3, 10), 2)
    with pytest.raises(InputValueError, match="non-finite"):
        finish_audio(torch.full((1, 1, 10), float("nan")))
    with pytest.raises(InputShapeError, match=r"\[B, C, S\]"):
        finish_audio(torch.zeros(10))


# --- files -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix, subtype, tol", [(".wav", None, 1 / 32768), (".flac", None, 1 / 2**23),
                                                  (".wav", "FLOAT", 0.0)])
def test_wav_and_flac_round_trip(tmp_path, suffix, subtype, tol):
    wav = 0.8 * torch.sin(torch.linspace(0, 300, 4000)).view(1, 1, -1).expand(1, 2, -1).contiguous()
    wav[0, 1] *= -0.5
    path = audio_io.write_audio(tmp_path / f"clip{suffix}", {"waveform": wav, "sample_rate": 48_000}, subtype=subtype)
    info = sf.info(str(path))
    assert info.samplerate == 48_000 and info.channels == 2 and info.frames == 4000
    back = audio_io.read_audio(path)
    assert back["sample_rate"] == 48_000 and back["waveform"].shape == (1, 2, 4000)
    assert (back["waveform"] - wav).abs().max() <= tol + 1e-9
    assert [p.name for p in tmp_path.iterdir()] == [f"clip{suffix}"]  # no temporary file left


def test_failed_write_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "clip.wav"
    first = {"waveform": torch.zeros(1, 1, 100), "sample_rate": 16_000}
    audio_io.write_audio(path, first)
    before = path.read_bytes()

    def broken_write(file, data, *args, **kwargs):
        with open(file, "wb") as f:
            f.write(b"RIFF half")
        raise OSError("disk full")

    monkeypatch.setattr(audio_io.sf, "write", broken_write)
    with pytest.raises(OSError, match="disk full"):
        audio_io.write_audio(path, {"waveform": torch.ones(1, 1, 100) * 0.5, "sample_rate": 16_000})
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["clip.wav"]
    with pytest.raises(InputValueError, match="'.mp3'"):
        audio_io.write_audio(tmp_path / "clip.mp3", first)
