"""The pipeline blocks on the embedded default model: shapes, ties, validation, determinism, image-to-AV."""

import pytest
import torch

from jointav.errors import CheckpointFileError, InputShapeError, InputValueError
from jointav.pipeline import api
from jointav.pipeline.specs import OVI_720_5S, OVI_960_10S, OVI_960_5S, spec_for_file
from jointav.samplers import audio_latent_length
from jointav.text.ovi_prompt import AudioCaptionStyle


@pytest.fixture(scope="module")
def model():
    return api.load_joint_model(None, device="cpu")


@pytest.fixture(scope="module")
def decoders():
    return api.load_decoders(None, None, None, device="cpu")


@pytest.fixture(scope="module")
def conditioning(model):
    return api.encode_prompt(model, "a red ball bounces twice on the left", "", "low thuds")


def test_empty_latent_ties_audio_length_to_video_frames(model):
    latent = api.empty_latent(model, "2s", 64, 96, batch=2)
    f = model.spec.vae_space_factor
    assert latent.video.shape == (2, model.spec.video_latent_channels, 7, 64 // f, 96 // f)
    assert model.dit.config.video.in_dim == model.spec.video_latent_channels
    assert latent.video_frames == 25 and latent.fps == 12
    assert latent.audio.shape == (2, audio_latent_length(7, model.spec.audio_per_video_frame),
                                  model.spec.audio_latent_channels)
    # the sound lasts as long as the picture, to within one video frame
    audio_seconds = latent.audio.shape[1] * latent.audio_samples_per_latent / latent.audio_sample_rate
    assert abs(audio_seconds - latent.duration_s) <= 1 / latent.fps


@pytest.mark.parametrize("height,width,name", [(70, 64, "height=70"), (64, 0, "width=0"), (64, 40, "width=40")])
def test_unusable_sizes_are_refused_naming_the_parameter(model, height, width, name):
    grid = api.spatial_multiple(model)  # the default: VAE factor 8 x DiT patch 2
    assert grid == 16
    with pytest.raises(InputValueError, match=name + rf" .*multiple of {grid}"):
        api.empty_latent(model, "2s", height, width)


def test_unknown_duration_is_refused_listing_the_presets(model):
    with pytest.raises(InputValueError, match=r"duration='9s' .*expected one of: 2s, 1s, 3s"):
        api.empty_latent(model, "9s", 64, 64)


def test_speech_lines_reach_the_text_encoder_in_ovi_markup(model):
    seen = []

    def spy(texts):
        seen.extend(texts)
        return model.text_encoder.encode(texts)

    cond = api.encode_prompt(model, "a blue character speaks", ["la la la"], "a high voice", "blur", "hiss",
                             text_encode=spy)
    assert seen == ["a blue character speaks <S>la la la<E> <AUDCAP>a high voice<ENDAUDCAP>", "blur", "hiss"]
    assert cond.video_positive.shape[1] == model.dit.config.video.text_dim
    assert torch.equal(cond.video_positive, cond.audio_positive)  # one prompt for both towers, as Ovi


def test_a_umt5_model_without_a_clip_names_the_clip_input(model):
    ovi_like = api.JointModel(dit=model.dit, spec=OVI_720_5S, name="model.safetensors", source="x")
    with pytest.raises(InputValueError, match=r"clip: .*umT5-XXL"):
        api.encode_prompt(ovi_like, "a dog", [], "")


def test_family_follows_the_published_file_names():
    assert spec_for_file("Ovi/model.safetensors") is OVI_720_5S
    assert spec_for_file("model_fp8_e4m3fn.safetensors") is OVI_720_5S
    assert spec_for_file("model_960x960.safetensors") is OVI_960_5S
    assert spec_for_file("model_960x960_10s.safetensors") is OVI_960_10S
    assert OVI_960_10S.duration_preset("10s").frames == 241
    assert audio_latent_length(61, OVI_960_10S.audio_per_video_frame) == 314
    assert audio_latent_length(31, OVI_720_5S.audio_per_video_frame) == 157
    assert OVI_960_5S.caption_style == AudioCaptionStyle.AUDIO_PREFIX


def test_missing_model_file_is_named(tmp_path):
    with pytest.raises(CheckpointFileError, match="nothing.safetensors does not exist"):
        api.load_joint_model(tmp_path / "nothing.safetensors")


def test_same_seed_gives_the_same_clip_bit_for_bit(model, decoders, conditioning):
    latent = api.empty_latent(model, "1s", 64, 64)
    a = api.sample(model, conditioning, latent, seed=5, steps=2)
    b = api.sample(model, conditioning, latent, seed=5, steps=2)
    c = api.sample(model, conditioning, latent, seed=6, steps=2)
    assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
    assert not torch.equal(a.video, c.video)
    frames_a, frames_b = api.decode_video(decoders, a), api.decode_video(decoders, b)
    assert torch.equal(frames_a, frames_b)
    assert torch.equal(api.decode_audio(decoders, a)["waveform"], api.decode_audio(decoders, b)["waveform"])


def test_decoded_clip_has_the_comfyui_layouts(model, decoders, conditioning):
    latent = api.sample(model, conditioning, api.empty_latent(model, "1s", 64, 96), seed=1, steps=2)
    frames = api.decode_video(decoders, latent)
    assert frames.shape == (13, 64, 96, 3) and frames.min() >= 0 and frames.max() <= 1
    audio = api.decode_audio(decoders, latent, sample_rate=48000, channels=2)
    assert audio["sample_rate"] == 48000 and audio["waveform"].shape[:2] == (1, 2)
    expected = round(latent.audio.shape[1] * 512 * 48000 / 16000)
    assert abs(audio["waveform"].shape[2] - expected) <= 1
    assert audio["waveform"].abs().max() <= 10 ** (-1 / 20) + 1e-6  # peak-safe: at most -1 dBFS


def test_an_empty_latent_is_not_decoded(model, decoders):
    with pytest.raises(InputValueError, match="sampler first"):
        api.decode_video(decoders, api.empty_latent(model, "1s", 64, 64))


def test_image_to_av_holds_the_encoded_first_frame(model, decoders, conditioning):
    image = torch.rand(1, 90, 120, 3)
    latent = api.image_to_av_latent(model, decoders, image, "1s")
    f = model.spec.vae_space_factor
    assert latent.video.shape[-2:] == (64 // f, 96 // f)  # nearest preset by aspect ratio: 64x96
    out = api.sample(model, conditioning, latent, seed=2, steps=2)
    held = latent.conditionings[0].latent
    assert torch.equal(out.video[:, :, :1], held.to(out.video.dtype))
    with pytest.raises(InputShapeError, match=r"\[B, H, W, 3\]"):
        api.image_to_av_latent(model, decoders, torch.rand(1, 3, 64, 64), "1s")


def test_skip_layer_beyond_the_model_is_refused(model, conditioning):
    layers = model.dit.config.num_layers
    with pytest.raises(InputValueError, match=rf"skip_layer=11 .*{layers} layers"):
        api.sample(model, conditioning, api.empty_latent(model, "1s", 64, 64), steps=1, skip_layer=11)


def test_skip_layer_minus_one_is_the_models_own(model, conditioning):
    latent = api.empty_latent(model, "1s", 64, 64)
    own = api.sample(model, conditioning, latent, seed=3, steps=1, skip_layer=-1)
    assert own.provenance["sampler"]["skip_layer"] == model.spec.default_skip_layer
    same = api.sample(model, conditioning, latent, seed=3, steps=1, skip_layer="default")
    assert torch.equal(own.video, same.video)


def test_default_duration_and_size_are_the_loaded_models_own(model):
    latent = api.empty_latent(model)
    height, width = model.spec.resolutions[0]
    f = model.spec.vae_space_factor
    assert latent.video.shape[-2:] == (height // f, width // f)
    assert latent.video_frames == model.spec.durations[0].frames
    assert api.empty_latent(model, "auto", height, width).video.shape == latent.video.shape


@pytest.mark.parametrize("height,width", [(4096, 4096), (1024, 1024), (256, 128)])
def test_frames_larger_than_the_family_runs_at_are_refused_listing_what_it_supports(model, height, width):
    with pytest.raises(InputValueError) as info:
        api.empty_latent(model, "1s", height, width)
    message = str(info.value)
    assert f"width={width}, height={height}" in message or f"height={height}" in message, message
    assert f"at most {model.spec.max_area} pixels" in message and "64x96" in message, message
    largest = max(model.spec.resolutions, key=lambda hw: hw[0] * hw[1])
    api.empty_latent(model, "1s", *largest)  # the largest preset is supported


def test_ovi_families_take_their_presets_and_refuse_twice_their_area(model):
    for spec in (OVI_720_5S, OVI_960_5S, OVI_960_10S):
        assert all(h * w <= spec.max_area for h, w in spec.resolutions), spec.family
        assert 4096 * 4096 > spec.max_area and spec.max_area < 2 * spec.target_area


def test_a_stop_request_lands_inside_a_forward_at_the_next_block(model, conditioning):
    from jointav.errors import GenerationInterrupted

    calls = []
    layers = model.dit.config.num_layers

    def cancel():  # the host's check: asked once before the step, then before each block
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(GenerationInterrupted, match="inside a model forward"):
        api.sample(model, conditioning, api.empty_latent(model, "1s", 64, 64), steps=3, cancel=cancel)
    assert len(calls) == 3 and layers > 2, "the stop was not seen at the second block of the first forward"
    assert model.dit.block_check is None, "the run's check stayed on the shared model"


def test_video_decoding_reports_progress_and_can_be_cancelled(model, decoders, conditioning):
    from jointav.errors import GenerationInterrupted

    latent = api.sample(model, conditioning, api.empty_latent(model, "2s", 64, 64), seed=1, steps=1)
    seen = []
    api.decode_video(decoders, latent, chunk_frames=3, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(3, 7), (6, 7), (7, 7)]
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 1  # stop before the second chunk

    with pytest.raises(GenerationInterrupted, match="latent frame 3 of 7"):
        api.decode_video(decoders, latent, chunk_frames=3, cancel=cancel)
