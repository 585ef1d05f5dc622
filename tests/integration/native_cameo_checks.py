"""Cameo on the native path, checked inside a real ComfyUI process (run by test_native_cameo.py as

    <ComfyUI's python> native_cameo_checks.py CHECK [--comfy-arg ...]

like native_checks.py, whose boot and helpers it uses). Each check works on a machine of its own as far as
consent goes: a fresh operator key, consent state and usage log in a temporary folder, so what it grants and
refuses never meets another test's history. Checks measure; the pytest side asserts.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from native_checks import CASES, Setup, boot, maxdiff, pack  # noqa: E402

MACHINE = Path(tempfile.mkdtemp(prefix="jointav-native-cameo-"))


def own_machine() -> None:
    """This process's operator key, consent state and usage log (before anything reads them)."""
    os.environ["JOINTAV_OPERATOR_KEY"] = str(MACHINE / "keys" / "operator.key")
    os.environ["JOINTAV_CAMEO_STATE"] = str(MACHINE / "cameo" / "consent-state.json")
    os.environ["JOINTAV_CAMEO_LOG"] = str(MACHINE / "cameo" / "usage.jsonl")
    os.environ["JOINTAV_PROVENANCE_DIR"] = str(MACHINE / "provenance")


def make_profile(decoders, colour: str, seed: int, name: str):
    """A cameo profile of a toy-world character (a picture and its voice), saved in this machine's folder."""
    import torch

    toyworld = pack("toyworld")
    clip = toyworld.render_clip(toyworld.SceneSpec(kind="speak", colour=colour, shape="character", count=3,
                                                   background="black", voice="high"), seed=seed)
    voice = {"waveform": torch.as_tensor(clip.audio).float().reshape(1, 1, -1), "sample_rate": clip.sample_rate}
    return pack("pipeline.cameo").create_profile(decoders, image=clip.frames[len(clip.frames) // 2], voice=voice,
                                                  name=name, out_dir=MACHINE / "cameos")


def grant(profile):
    """The person grants this machine's operator key for a day; returns (record, the profile as granted)."""
    gate = pack("cameo.consent_gate")
    keys = pack("cameo.keys")
    return gate.grant_for_profile(profile, keys.generate_key(), subject_id="native-test",
                                  operators=[keys.operator_key().public_key()],
                                  valid_until=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1))


def native_sample(s: Setup, guider, latent: dict, seed: int, steps: int):
    """What core SamplerCustomAdvanced does with a GUIDER, JointAV Noise, core euler and the reference's sigmas."""
    import comfy.sample
    import comfy.samplers

    samples = comfy.sample.fix_empty_latent_channels(guider.model_patcher, latent["samples"])
    noise = s.g.JointAVNoise(seed).generate_noise(latent)
    sigmas = s.g.reference_sigmas("euler", steps, 5.0)
    out = guider.sample(noise, samples, comfy.samplers.sampler_object("euler"), sigmas,
                        denoise_mask=latent.get("noise_mask"), callback=None, disable_pbar=True, seed=seed)
    return s.layout.unpack(out)


# --------------------------------------------------------------------------------------------- checks

def check_cameo_parity(steps: int = 16) -> dict:
    """JointAV Apply Cameo (native) + JointAV Guider (reference_guidance on / off / auto) + JointAV Noise + core
    euler vs the library's apply_cameo + JointAV Sampler (Euler), same cameo (first frame and reference tokens),
    seed and prompts."""
    native = pack("nodes.native")
    cameo = pack("pipeline.cameo")
    consent_check = pack("cameo.consent_gate").consent_check_for()
    s = Setup()
    decoders = s.api.load_decoders()
    record, profile = grant(make_profile(decoders, "green", 5, "Native Green"))
    rows, outputs = [], {}
    for seed, prompt, duration in CASES[:2]:
        conds = s.prompts(prompt)
        empty = s.api.empty_latent(s.joint, duration, 64, 64)
        core_latent = native.core_latent(empty, native.joint_model_view(s.patcher, "check"))
        positive, latent = native.ApplyCameoNative.execute(s.patcher, decoders, conds[0], core_latent, profile,
                                                           "both").result
        for guidance in ("on", "off", "auto"):
            guider = native.Guider.execute(s.patcher, positive, conds[1], conds[2], 4.0, 3.0, -1, guidance).result[0]
            v, a = native_sample(s, guider, latent, seed, steps)
            outputs[(seed, guidance)] = (v, a)
            if guidance == "auto":
                continue
            library = cameo.apply_cameo(s.joint, decoders, empty, profile, mode="both", consent_check=consent_check,
                                        reference_guidance=guidance == "on")
            ref_v, ref_a = s.reference(conds, library, seed, steps)
            rows.append({"seed": seed, "reference_guidance": guidance, "video": maxdiff(v, ref_v),
                         "audio": maxdiff(a, ref_a), "magnitude": float(ref_v.abs().max()),
                         "first_frame_held": maxdiff(v[:, :, :1], latent_video_frame0(s, latent))})
        held = latent.get("jointav_provenance", {})
        provenance = {k: held.get(k) for k in ("consent_sha256", "cameo_profile_id", "cameo_mode")}
    seed = CASES[0][0]
    # controls: guidance on vs off, and a cameo's tokens vs none (the same first frame held, no references)
    on, off, auto = outputs[(seed, "on")], outputs[(seed, "off")], outputs[(seed, "auto")]
    conds = s.prompts(CASES[0][1])
    _, latent = native.ApplyCameoNative.execute(s.patcher, decoders, conds[0], native.core_latent(
        s.api.empty_latent(s.joint, CASES[0][2], 64, 64), native.joint_model_view(s.patcher, "check")), profile,
        "first_frame").result
    guider = native.Guider.execute(s.patcher, conds[0], conds[1], conds[2], 4.0, 3.0, -1, "on").result[0]
    plain_v, plain_a = native_sample(s, guider, latent, seed, steps)
    return {"rows": rows, "record_sha256": record.record_sha256, "profile_id": profile.id, "provenance": provenance,
            "on_vs_off": {"video": maxdiff(on[0], off[0]), "audio": maxdiff(on[1], off[1])},
            "auto_vs_on": {"video": maxdiff(auto[0], on[0]), "audio": maxdiff(auto[1], on[1])},
            "tokens_vs_none": {"video": maxdiff(on[0], plain_v), "audio": maxdiff(on[1], plain_a)},
            "model_reference_guidance": bool(s.patcher.model.jointav_spec.reference_guidance)}


def latent_video_frame0(s: Setup, latent: dict):
    video, _ = s.layout.unpack(latent["samples"])
    return video[:, :, :1]


def check_cameo_refused() -> dict:
    """Without a consent record the native node raises the library's refusal, before it encodes anything and
    before any DiT forward."""
    native = pack("nodes.native")
    cameo = pack("pipeline.cameo")
    s = Setup()
    decoders = s.api.load_decoders()
    profile = make_profile(decoders, "red", 7, "Native Red")  # never granted
    calls = {"encode": 0, "forward": 0}
    vae_cls, dm_cls = type(decoders.video_vae), type(s.patcher.model.diffusion_model)
    encode, forward = vae_cls.encode_image, dm_cls._forward

    def counting_encode(self, *args, **kwargs):
        calls["encode"] += 1
        return encode(self, *args, **kwargs)

    def counting_forward(self, *args, **kwargs):
        calls["forward"] += 1
        return forward(self, *args, **kwargs)

    vae_cls.encode_image, dm_cls._forward = counting_encode, counting_forward
    seed, prompt, duration = CASES[0]
    conds = s.prompts(prompt)
    empty = s.api.empty_latent(s.joint, duration, 64, 64)
    core_latent = native.core_latent(empty, native.joint_model_view(s.patcher, "check"))
    before = {k: v.clone() for k, v in core_latent.items() if hasattr(v, "clone")}
    out = {}
    try:
        native.ApplyCameoNative.execute(s.patcher, decoders, conds[0], core_latent, profile, "both")
        out["native"] = "accepted?!"
    except Exception as exc:
        out["native"] = str(exc)
        out["native_type"] = type(exc).__name__
    out["calls_after_native"] = dict(calls)
    try:
        cameo.apply_cameo(s.joint, decoders, empty, profile, mode="both",
                          consent_check=pack("cameo.consent_gate").consent_check_for())
        out["library"] = "accepted?!"
    except Exception as exc:
        out["library"] = str(exc)
        out["library_type"] = type(exc).__name__
    vae_cls.encode_image, dm_cls._forward = encode, forward
    # today's Apply Cameo with reference tokens, then JointAV To LATENT: refused, not silently dropped
    with_tokens = cameo.apply_cameo(s.joint, decoders, empty, profile, mode="reference_tokens", consent_check=None)
    try:
        native.ToCoreLatent.execute(s.patcher, with_tokens)
        out["to_latent_with_tokens"] = "accepted?!"
    except Exception as exc:
        out["to_latent_with_tokens"] = str(exc)
    out["latent_unchanged"] = all(bool((core_latent[k] == v).all()) for k, v in before.items()) and \
        "jointav_provenance" not in core_latent
    out["positive_unchanged"] = not any(k.startswith("jointav_") for k in conds[0][0][1])
    return out


def check_reference_forward() -> dict:
    """The diffusion model hands reference tokens to the DiT on both core forms (packed on 0.3.x, [video, audio]
    as newer core unpacks a NestedTensor) and through extra_conds from the conditioning keys; equal to the plain
    DiT called with them, and different from a call without them."""
    import torch

    s = Setup()
    model = s.patcher.model
    dm = model.diffusion_model
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(1, 16, 7, 8, 8, generator=g), torch.randn(1, 63, 20, generator=g)
    ctx = torch.randn(1, 64, 64, generator=g)
    v_ref, a_ref = torch.randn(1, 16, 2, 8, 8, generator=g), torch.randn(1, 30, 20, generator=g)
    t = torch.tensor([700.0])
    conds = model.extra_conds(cross_attn=ctx, jointav_video_reference=v_ref, jointav_audio_reference=a_ref)
    with torch.no_grad():
        packed = dm(dm.layout.pack(video, audio), t, ctx, video_reference=v_ref, audio_reference=a_ref)
        nested = dm([video, audio], t, ctx, video_reference=v_ref, audio_reference=a_ref)
        plain = dm.dit(video, audio, t, ctx, ctx, video_reference=v_ref, audio_reference=a_ref)
        without = dm([video, audio], t, ctx)
    pv, pa = dm.layout.unpack(packed)
    return {"extra_conds": sorted(k for k in conds if k.endswith("_reference")),
            "extra_conds_batch2": [list(conds[k].process_cond(2).cond.shape) for k in ("video_reference",
                                                                                        "audio_reference")],
            "packed_vs_nested": [maxdiff(pv, nested[0]), maxdiff(pa, nested[1])],
            "nested_vs_plain_dit": [maxdiff(nested[0], plain[0]), maxdiff(nested[1], plain[1])],
            "with_vs_without": [maxdiff(nested[0], without[0]), maxdiff(nested[1], without[1])]}


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")}

if __name__ == "__main__":
    name = sys.argv[1]
    own_machine()
    boot(sys.argv[2:])
    result = CHECKS[name]()
    print("RESULT " + json.dumps(result))
