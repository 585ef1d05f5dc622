"""Checks of the native path inside a real ComfyUI process (not through HTTP): run by test_native_model.py as

    <ComfyUI's python> native_checks.py CHECK [--comfy-arg ...]

It imports ComfyUI from COMFYUI_PATH (CPU), imports this repository as a package the way ComfyUI imports a
custom-node folder, runs one check and prints `RESULT <json>` as its last line. Checks measure; the pytest
side asserts, so a failure shows the measured numbers.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
COMFY = Path(os.environ.get("COMFYUI_PATH", Path.home() / "comfy" / "ComfyUI")).expanduser()
PACK = "jointav_pack"


def boot(comfy_args: list[str]) -> None:
    sys.argv = ["main.py", "--cpu", *comfy_args]
    sys.path.insert(0, str(COMFY))
    os.chdir(COMFY)
    import comfy.options

    comfy.options.enable_args_parsing()
    import comfy.model_management  # noqa: F401  (reads the arguments)

    spec = importlib.util.spec_from_file_location(PACK, REPO / "__init__.py", submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    spec.loader.exec_module(module)
    pack("comfy_native.registration").register()


def pack(name: str):
    return importlib.import_module(f"{PACK}.{name}")


# --------------------------------------------------------------------------------------------- helpers

class Setup:
    """The embedded default model both ways: the library's (JointAV Sampler) and core's MODEL + CLIP."""

    def __init__(self):
        self.api = pack("pipeline.api")
        self.g = pack("comfy_native.guidance")
        self.lat = pack("comfy_native.latents")
        self.joint = self.api.load_joint_model(None)
        self.patcher, self.clip = pack("comfy_native.loading").load_default(pack("pipeline.default_model").default_parts())
        self.layout = pack("comfy_native.model").layout_for(self.joint.dit.config, self.joint.spec)

    def encode(self, text: str):
        return self.clip.encode_from_tokens_scheduled(self.clip.tokenize(text))

    def prompts(self, prompt: str, video_negative: str = "blur, jitter", audio_negative: str = "robotic, muffled"):
        return self.encode(prompt), self.encode(video_negative), self.encode(audio_negative)

    def conditioning(self, pos, vneg, aneg):
        """The JointAV Sampler's conditioning from the same CLIP embeddings (one text at a time, as core encodes)."""
        jc = pack("pipeline.types").JointConditioning
        return jc(pos[0][0][0], pos[0][0][0], vneg[0][0][0], aneg[0][0][0], "prompt", "video negative",
                  "audio negative")

    def core_sample(self, patcher, conds, latent, seed, steps, sampler="euler", sigmas=None, noise=None,
                    skip_layer=-1):
        """What core SamplerCustomAdvanced does with our guider and noise, on the joint LATENT of `latent`."""
        import comfy.sample
        import comfy.samplers

        guider = self.g.JointAVGuider(patcher, 4.0, 3.0, skip_layer)
        guider.set_conds(*conds)
        core = self.lat.to_core_latent(latent, self.layout)
        samples = comfy.sample.fix_empty_latent_channels(patcher, core["samples"])
        noise = (noise or self.g.JointAVNoise(seed)).generate_noise(core)
        if sigmas is None:
            sigmas = self.g.reference_sigmas(getattr(sampler, "jointav_solver", "euler"), steps, 5.0)
        sampler = comfy.samplers.sampler_object(sampler) if isinstance(sampler, str) else sampler
        out = guider.sample(noise, samples, sampler, sigmas,
                            denoise_mask=core.get("noise_mask"), callback=None, disable_pbar=True, seed=seed)
        return self.layout.unpack(out)

    def kernel_floor(self, conds, latent, seed, steps, ref_v, ref_a, solver="euler") -> dict:
        """float32 rounding's own effect on this model: the library loop's clip with the plain-matmul attention
        kernel (the same math, other rounding) against its clip with SDPA (ref_v, ref_a)."""
        backend = self.joint.dit.attention_backend
        self.joint.dit.attention_backend = "math"
        try:
            v, a = self.reference(conds, latent, seed, steps, solver=solver)
        finally:
            self.joint.dit.attention_backend = backend
        return {"video": maxdiff(v, ref_v), "audio": maxdiff(a, ref_a)}

    def reference(self, conds, latent, seed, steps, joint=None, skip_layer="default", solver="euler"):
        out = self.api.sample(joint or self.joint, self.conditioning(*conds), latent, seed=seed, steps=steps,
                              solver=solver, shift=5.0, video_guidance=4.0, audio_guidance=3.0, skip_layer=skip_layer)
        return out.video, out.audio


def maxdiff(a, b) -> float:
    return float((a.float() - b.float()).abs().max())


CASES = [(0, "a red ball bounces twice on the left <AUDCAP>low thuds<ENDAUDCAP>", "1s"),
         (1, "a green square slides to the right <AUDCAP>a high whistle<ENDAUDCAP>", "2s"),
         (2, "a blue ball falls and bounces", "1s")]


# --------------------------------------------------------------------------------------------- checks

def check_parity(steps: int = 24) -> dict:
    """Core SamplerCustomAdvanced's pieces (our guider + noise, core euler, reference sigmas) vs JointAV Sampler."""
    import comfy.sample

    s = Setup()
    rows = []
    for seed, prompt, duration in CASES:
        conds = s.prompts(prompt)
        latent = s.api.empty_latent(s.joint, duration, 64, 64)
        ref_v, ref_a = s.reference(conds, latent, seed, steps)
        t0 = time.perf_counter()
        v, a = s.core_sample(s.patcher, conds, latent, seed, steps)
        core_s = time.perf_counter() - t0
        rows.append({"seed": seed, "duration": duration, "video": maxdiff(v, ref_v), "audio": maxdiff(a, ref_a),
                     "magnitude": float(ref_v.abs().max()), "core_s": core_s,
                     "kernel_floor": s.kernel_floor(conds, latent, seed, steps, ref_v, ref_a)})
    # negative controls: the same check with other seeding must show a large difference
    seed, prompt, duration = CASES[0]
    conds = s.prompts(prompt)
    latent = s.api.empty_latent(s.joint, duration, 64, 64)
    ref_v, ref_a = s.reference(conds, latent, seed, steps)

    class CoreRandomNoise:  # core's RandomNoise: one generator over the whole (packed) latent
        def __init__(self, seed):
            self.seed = seed

        def generate_noise(self, latent):
            return comfy.sample.prepare_noise(latent["samples"], self.seed)

    v1, a1 = s.core_sample(s.patcher, conds, latent, seed, steps, noise=s.g.JointAVNoise(seed + 1))
    v2, a2 = s.core_sample(s.patcher, conds, latent, seed, steps, noise=CoreRandomNoise(seed))
    return {"rows": rows, "other_seed": {"video": maxdiff(v1, ref_v), "audio": maxdiff(a1, ref_a)},
            "core_random_noise": {"video": maxdiff(v2, ref_v), "audio": maxdiff(a2, ref_a)}}


def check_parity_first_frame(steps: int = 24) -> dict:
    """Image-to-AV: the first latent frame held (core noise_mask vs the library's keep-mask), Euler, same seed."""
    import torch

    s = Setup()
    samplers = pack("samplers")
    rows = []
    for seed, prompt, duration in CASES[:2]:
        conds = s.prompts(prompt)
        latent = s.api.empty_latent(s.joint, duration, 64, 64)
        first = torch.randn(1, latent.video.shape[1], 1, *latent.video.shape[3:], generator=torch.Generator().manual_seed(9))
        latent.conditionings.append(samplers.FirstFrame(first))
        ref_v, ref_a = s.reference(conds, latent, seed, steps)
        v, a = s.core_sample(s.patcher, conds, latent, seed, steps)
        rows.append({"seed": seed, "video": maxdiff(v, ref_v), "audio": maxdiff(a, ref_a),
                     "first_frame_held": maxdiff(v[:, :, :1], first), "reference_first_frame": maxdiff(ref_v[:, :, :1], first)})
    return {"rows": rows}


def check_solvers(steps: int = 24) -> dict:
    """JointAV Solver (Ovi's UniPC / DPM++ / Euler as a core SAMPLER) + JointAV Scheduler's sigmas on the core path
    vs the JointAV Sampler's library loop with the same solver; plus core's own uni_pc on the same sigmas."""
    import comfy.samplers
    import torch

    solvers = pack("comfy_native.solvers")
    s = Setup()
    rows = []
    for (seed, prompt, duration), first_frame in zip(CASES, (False, True, False)):
        conds = s.prompts(prompt)
        latent = s.api.empty_latent(s.joint, duration, 64, 64)
        if first_frame:  # image-to-AV: frame 0 held (noise_mask on the core path, keep mask in the library)
            first = torch.randn(1, latent.video.shape[1], 1, *latent.video.shape[3:],
                                generator=torch.Generator().manual_seed(9))
            latent.conditionings.append(pack("samplers").FirstFrame(first))
        for name in ("unipc", "dpm++", "euler"):
            sampler = solvers.jointav_sampler(name)
            sampler.jointav_solver = name
            v, a = s.core_sample(s.patcher, conds, latent, seed, steps, sampler=sampler)
            ref_v, ref_a = s.reference(conds, latent, seed, steps, solver=name)
            rows.append({"seed": seed, "solver": name, "first_frame": first_frame, "video": maxdiff(v, ref_v),
                         "audio": maxdiff(a, ref_a), "magnitude": float(ref_v.abs().max())})
            rows[-1]["kernel_floor"] = s.kernel_floor(conds, latent, seed, steps, ref_v, ref_a, solver=name)
    seed, prompt, duration = CASES[0]
    conds = s.prompts(prompt)
    latent = s.api.empty_latent(s.joint, duration, 64, 64)
    ref_v, ref_a = s.reference(conds, latent, seed, steps, solver="unipc")
    core_v, core_a = s.core_sample(s.patcher, conds, latent, seed, steps, sampler=comfy.samplers.sampler_object("uni_pc_bh2"),
                                   sigmas=s.g.reference_sigmas("unipc", steps, 5.0))
    return {"steps": steps, "rows": rows,
            "core_uni_pc_bh2": {"video": maxdiff(core_v, ref_v), "audio": maxdiff(core_a, ref_a)}}


def check_sampler_node_shortcut(steps: int = 12) -> dict:
    """Today's JointAV Sampler node (JointAV Load Model -> Encode Prompt -> Empty Latent -> Sampler): it runs
    through core's guider.sample on the model's core MODEL, and its clip is the library loop's on the same model;
    with block swap it stays on the library loop."""
    import comfy.samplers

    from dataclasses import replace

    import torch

    loaders, prompt, latents, sampler_node = (pack(f"nodes.{m}") for m in ("loaders", "prompt", "latents", "sampler"))
    calls = {"core": 0}
    original = comfy.samplers.CFGGuider.sample

    def counting(self, *args, **kwargs):
        calls["core"] += 1
        return original(self, *args, **kwargs)

    comfy.samplers.CFGGuider.sample = counting
    out = {}
    try:
        for offload in ("none", "blocks 1"):
            model, core_model, _ = loaders.LoadModel.execute(loaders.EMBEDDED, "auto",
                                                             "auto", offload, "auto").result
            conditioning = prompt.EncodePrompt.execute(model, CASES[0][1], "", "", "blur, jitter",
                                                       "robotic, muffled").result[0]
            latent = latents.EmptyLatent.execute(model, "1s", 64, 64, 1).result[0]
            cases = [("unipc", None), ("euler", None)] if offload == "none" else [("unipc", None)]
            if offload == "none":  # reference tokens (a cameo's face and voice), guided or not
                g = torch.Generator().manual_seed(5)
                video_ref = torch.randn(1, latent.video.shape[1], 1, *latent.video.shape[3:], generator=g)
                audio_ref = torch.randn(1, 12, latent.audio.shape[2], generator=g)
                cases += [("unipc", pack("samplers").ReferenceTokens(video_ref, audio_ref, guided=guided))
                          for guided in (True, False)]
            for solver, references in cases:
                calls["core"] = 0
                if references is not None:
                    latent = replace(latent, conditionings=[references])
                node = sampler_node.Sampler.execute(model, conditioning, latent, 3, steps, solver, 5.0, 4.0, 3.0,
                                                    -1).result[0]
                library = pack("pipeline.api").sample(model, conditioning, latent, seed=3, steps=steps, solver=solver,
                                                      shift=5.0, video_guidance=4.0, audio_guidance=3.0)
                name = f"{offload}/{solver}" + ("" if references is None else f"/references guided={references.guided}")
                if offload == "none" and solver == "unipc" and references is None:
                    plain_video = node.video
                out[name] = {"from_plain_unipc": maxdiff(node.video, plain_video) if offload == "none" else None,
                    "core_runs": calls["core"], "shared_weights": model.native is core_model if offload == "none" else None,
                    "video": maxdiff(node.video, library.video), "audio": maxdiff(node.audio, library.audio),
                    "provenance_equal": node.provenance == library.provenance, "sampled": node.sampled}
            if offload == "none":  # steps 0: the model's own count (the embedded default: 24)
                own = sampler_node.Sampler.execute(model, conditioning, replace(latent, conditionings=[]), 3, 0,
                                                   "euler", 5.0, 4.0, 3.0, -1).result[0]
                out["steps 0"] = {"steps_run": own.provenance["sampler"]["steps"],
                                  "model_default": model.spec.default_steps}
    finally:
        comfy.samplers.CFGGuider.sample = original
    return out


def check_samplers() -> dict:
    """Other core samplers and BasicScheduler run on the joint latent (finite, the right shapes)."""
    import comfy.samplers

    s = Setup()
    seed, prompt, duration = CASES[0]
    conds = s.prompts(prompt)
    latent = s.api.empty_latent(s.joint, duration, 64, 64)
    sigmas = comfy.samplers.calculate_sigmas(s.patcher.get_model_object("model_sampling"), "simple", 8)
    out = {"simple_sigmas": [float(x) for x in sigmas]}
    for name in ("euler", "uni_pc", "dpmpp_2m"):
        # a copy each time: core's uni_pc sets the last sigma of the tensor it is given to 0.001
        v, a = s.core_sample(s.patcher, conds, latent, seed, 8, sampler=name, sigmas=sigmas.clone())
        out[name] = {"finite": bool(v.isfinite().all() and a.isfinite().all()), "video_shape": list(v.shape),
                     "audio_shape": list(a.shape), "video_std": float(v.std())}
    normal = comfy.samplers.calculate_sigmas(s.patcher.get_model_object("model_sampling"), "normal", 24)
    out["normal_vs_reference_sigmas"] = maxdiff(normal, s.g.reference_sigmas("euler", 24, 5.0))
    # core ModelSamplingSD3 sets the flow shift: its shift-3 "normal" table is the reference's shift-3 Euler table
    from comfy_extras.nodes_model_advanced import ModelSamplingSD3

    shifted = ModelSamplingSD3().patch(s.patcher, 3.0)[0]
    normal3 = comfy.samplers.calculate_sigmas(shifted.get_model_object("model_sampling"), "normal", 24)
    out["sd3_shift3_vs_reference_shift3"] = maxdiff(normal3, s.g.reference_sigmas("euler", 24, 3.0))
    out["sd3_shift3_vs_shift5"] = maxdiff(normal3, normal)
    v, a = s.core_sample(shifted, conds, latent, seed, 8, sigmas=normal3[::3].clone())
    out["sd3_finite"] = bool(v.isfinite().all() and a.isfinite().all())
    return out


def _lora_file(s, folder: Path, form: str, prefix: str, rank: int = 2) -> tuple[Path, dict]:
    import torch
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(5)
    targets = ["video_model.blocks.0.self_attn.q", "audio_model.blocks.1.cross_attn.k_fusion", "video_model.head.head"]
    sd, pairs = {}, {}
    weights = s.patcher.model.diffusion_model.state_dict()
    for t in targets:
        out_dim, in_dim = weights[f"{t}.weight"].shape
        down = torch.randn(rank, in_dim, generator=g) * 0.05
        up = torch.randn(out_dim, rank, generator=g) * 0.05
        a_key, b_key = ("lora_A", "lora_B") if form == "peft" else ("lora_down", "lora_up")
        sd[f"{prefix}{t}.{a_key}.weight"] = down
        sd[f"{prefix}{t}.{b_key}.weight"] = up
        pairs[t] = (up, down)
    path = folder / f"lora_{form}_{prefix.strip('.') or 'bare'}.safetensors"
    save_file(sd, str(path))
    return path, pairs


def check_lora() -> dict:
    """Core LoraLoaderModelOnly's function on our MODEL, in four key forms; patched weights, clip change, strength 0."""
    import comfy.model_management
    import comfy.sd
    import comfy.utils
    import torch

    s = Setup()
    seed, prompt, duration = CASES[2]
    conds = s.prompts(prompt)
    latent = s.api.empty_latent(s.joint, duration, 64, 64)
    base_v, base_a = s.core_sample(s.patcher, conds, latent, seed, 6)
    base_weights = {k: v.clone() for k, v in s.patcher.model.diffusion_model.state_dict().items()}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for form in ("peft", "kohya"):
            for prefix in ("diffusion_model.", ""):
                path, pairs = _lora_file(s, Path(tmp), form, prefix)
                lora = comfy.utils.load_torch_file(str(path), safe_load=True)
                row = {}
                for strength in (0.7, 0.0):
                    patched, _ = comfy.sd.load_lora_for_models(s.patcher, None, lora, strength, 0)
                    comfy.model_management.load_models_gpu([patched])
                    weights = patched.model.diffusion_model.state_dict()
                    errors = [float((weights[f"{t}.weight"].float() - (base_weights[f"{t}.weight"].float()
                                     + strength * (up @ down))).abs().max()) for t, (up, down) in pairs.items()]
                    untouched = all(torch.equal(weights[k], base_weights[k]) for k in base_weights
                                    if k.rsplit(".", 1)[0] not in pairs)
                    v, a = s.core_sample(patched, conds, latent, seed, 6)
                    row[str(strength)] = {"patched_keys": len(patched.patches), "max_weight_error": max(errors),
                                          "others_untouched": untouched, "video_change": maxdiff(v, base_v),
                                          "audio_change": maxdiff(a, base_a),
                                          "bit_identical": bool(torch.equal(v, base_v) and torch.equal(a, base_a))}
                    comfy.model_management.unload_all_models()
                results[f"{form}/{prefix or '(no prefix)'}"] = row
    restored = all(torch.equal(v, base_weights[k]) for k, v in s.patcher.model.diffusion_model.state_dict().items())
    return {"forms": results, "base_restored_after_unload": restored}


def check_foley_adapter(steps: int = 6) -> dict:
    """The embedded default's foley adapter inside ComfyUI: the JointAV Sampler adds it (core diff patches on a clone
    of the MODEL) for a video-to-audio latent and matches the library loop that adds it in place; core
    LoraLoaderModelOnly finds the same file in its `loras` list and patches exactly its differences; the MODEL's
    own weights are untouched afterwards."""
    import comfy.model_management
    import comfy.sd
    import comfy.utils
    import folder_paths
    import torch

    loaders, prompt, sampler_node = (pack(f"nodes.{m}") for m in ("loaders", "prompt", "sampler"))
    api, adapters, graph_latents = pack("pipeline.api"), pack("pipeline.adapters"), pack("pipeline.graph_latents")
    toyworld = pack("toyworld")
    loaders.register_adapter_folder()
    model, core_model, _ = loaders.LoadModel.execute(loaders.EMBEDDED, "auto", "auto", "none", "auto").result
    decoders = api.load_decoders(None)
    text = "a red ball bounces twice on the left, low thuds, on a gray background"
    conditioning = prompt.EncodePrompt.execute(model, text, "", "", "blur, jitter", "robotic, muffled").result[0]
    frames = torch.from_numpy(toyworld.render_clip(toyworld.parse_caption(text), seed=5).frames).float() / 255
    latent = graph_latents.video_to_audio_latent(model, decoders, frames)
    base = {k: v.clone() for k, v in core_model.model.diffusion_model.state_dict().items()}
    node = sampler_node.Sampler.execute(model, conditioning, latent, 3, steps, "unipc", 5.0, 4.0, 3.0, -1).result[0]
    # then text-to-AV on the same MODEL while the adapted clone is still loaded: core must take the adapter off
    t2av = api.empty_latent(model, "2s", 64, 64)
    node_t2av = sampler_node.Sampler.execute(model, conditioning, t2av, 3, steps, "unipc", 5.0, 4.0, 3.0, -1).result[0]
    comfy.model_management.unload_all_models()  # (the library loop reads the plain DiT's weights directly)
    after_node = all(torch.equal(v, base[k]) for k, v in core_model.model.diffusion_model.state_dict().items())
    library = api.sample(model, conditioning, latent, seed=3, steps=steps, solver="unipc")
    plain = api.sample(model, conditioning, latent, seed=3, steps=steps, solver="unipc", adapter="off")
    library_t2av = api.sample(model, conditioning, t2av, seed=3, steps=steps, solver="unipc")

    path = adapters.ADAPTERS["jointav-default"]["whole_video"]
    listed = path.name in folder_paths.get_filename_list("loras")
    lora = comfy.utils.load_torch_file(folder_paths.get_full_path("loras", path.name), safe_load=True)
    patched, _ = comfy.sd.load_lora_for_models(core_model, None, lora, 1.0, 0)
    comfy.model_management.load_models_gpu([patched])
    weights = patched.model.diffusion_model.state_dict()
    diffs = adapters.read_adapter(path, model.dit).diffs
    errors = {k: float((weights[k].float() - (base[k].float() + d.float())).abs().max())
              for k, d in diffs.items()}
    weight_error = max(errors.values())
    others = all(torch.equal(weights[k], base[k]) for k in base if k not in diffs)
    comfy.model_management.unload_all_models()
    restored = all(torch.equal(v, base[k]) for k, v in core_model.model.diffusion_model.state_dict().items())
    return {"node_adapter": node.provenance["sampler"].get("adapter"),
            "library_adapter": library.provenance["sampler"].get("adapter"),
            "node_vs_library_audio": maxdiff(node.audio, library.audio),
            "node_vs_library_video": maxdiff(node.video, library.video),
            "node_vs_without_audio": maxdiff(node.audio, plain.audio),
            "t2av_after_foley_node_vs_library": max(maxdiff(node_t2av.audio, library_t2av.audio),
                                                    maxdiff(node_t2av.video, library_t2av.video)),
            "t2av_adapter": node_t2av.provenance["sampler"].get("adapter"),
            "weights_untouched_after_node": after_node, "listed_in_loras": listed,
            "lora_patched_keys": len(patched.patches), "adapter_keys": len(diffs),
            "lora_weight_error": weight_error, "lora_others_untouched": others, "restored_after_unload": restored}


def check_management() -> dict:
    """Model management: listed after a run, unloaded by unload_all_models and by free_memory; partial loading."""
    import comfy.model_management as mm
    import torch

    s = Setup()
    seed, prompt, duration = CASES[2]
    conds = s.prompts(prompt)
    latent = s.api.empty_latent(s.joint, duration, 64, 64)
    v_full, _ = s.core_sample(s.patcher, conds, latent, seed, 4)
    listed = [type(m.model.model).__name__ for m in mm.current_loaded_models]
    ours_loaded = any(m.model is s.patcher for m in mm.current_loaded_models)
    mm.unload_all_models()
    after_unload = any(m.model is s.patcher for m in mm.current_loaded_models)
    s.core_sample(s.patcher, conds, latent, seed, 1)
    relisted = any(m.model is s.patcher for m in mm.current_loaded_models)
    mm.free_memory(1 << 50, mm.get_torch_device())
    after_free = any(m.model is s.patcher for m in mm.current_loaded_models)
    # partial ("lowvram") loading: layers beyond a small budget stay where they are and are cast in per forward
    patcher = s.patcher
    patcher.unpatch_model()
    patcher.load(mm.get_torch_device(), lowvram_model_memory=64 * 1024, force_patch_weights=False, full_load=False)
    streamed = sum(1 for m in patcher.model.modules() if getattr(m, "comfy_cast_weights", False))
    lowvram_layers = sum(1 for m in patcher.model.modules() if hasattr(m, "comfy_cast_weights"))
    v_low, _ = s.core_sample(patcher, conds, latent, seed, 4)
    return {"loaded_models": listed, "ours_loaded_after_run": ours_loaded, "after_unload_all": after_unload,
            "relisted": relisted, "after_free_memory": after_free, "device": str(mm.get_torch_device()),
            "offload_device": str(mm.unet_offload_device()), "comfy_layers": lowvram_layers,
            "streamed_layers": streamed, "partial_vs_full": maxdiff(v_low, v_full),
            "partial_equal": bool(torch.equal(v_low, v_full))}


def _relative_l1(x, reference) -> float:
    """Mean |x - reference| over mean |reference|: how far a clip's latent moved, as a fraction of its size."""
    return float((x.float() - reference.float()).abs().mean() / reference.float().abs().mean())


def _count_dit_forwards(dm_cls) -> tuple[dict, object]:
    """Counts calls of the DiT itself (inside every DIFFUSION_MODEL wrapper, so cache hits are not counted)."""
    calls = {"n": 0}
    original = dm_cls._forward

    def counting(self, *args, **kwargs):
        calls["n"] += 1
        return original(self, *args, **kwargs)

    dm_cls._forward = counting
    return calls, original


def _input_survives_a_writing_wrapper(s, conds, latent, seed, steps) -> bool:
    """A DIFFUSION_MODEL wrapper that zeroes its input after the DiT ran (as EasyCache writes `x += diff` into
    its input on a skipped step) must leave the clip bit for bit as it is: core reads the model's input again
    after the forward (calculate_denoised), and on an fp32 model no dtype cast makes a copy in between."""
    import comfy.patcher_extension
    import torch

    def scribbling(executor, *args, **kwargs):
        out = executor(*args, **kwargs)
        args[0].zero_()
        return out

    plain_v, plain_a = s.core_sample(s.patcher, conds, latent, seed, steps)
    wrapped = s.patcher.clone()
    wrapped.add_wrapper_with_key(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL, "scribble", scribbling)
    v, a = s.core_sample(wrapped, conds, latent, seed, steps)
    return bool(torch.equal(v, plain_v) and torch.equal(a, plain_a))


def check_easycache(steps: int = 24, thresholds=(0.05, 0.1, 0.2)) -> dict:
    """Core EasyCache (node defaults: start 0.15, end 0.95; 0.2 is its default threshold) on our MODEL, per case:
    DiT forwards with and without, and how far the final joint latent moves (mean relative L1, video and audio
    halves apart) against the uncached clip of the same seed. Two yardsticks from the same run: the same
    number of forwards spent on a shorter schedule, and another seed (what "a different clip" measures)."""
    from comfy_extras.nodes_easycache import EasyCacheNode

    s = Setup()
    dm_cls = type(s.patcher.model.diffusion_model)
    calls, original = _count_dit_forwards(dm_cls)
    cases = []
    try:
        for seed, prompt, duration in CASES:
            conds = s.prompts(prompt)
            latent = s.api.empty_latent(s.joint, duration, 64, 64)
            calls["n"] = 0
            v0, a0 = s.core_sample(s.patcher, conds, latent, seed, steps)
            case = {"seed": seed, "duration": duration, "forwards_plain": calls["n"], "cached": []}
            for threshold in thresholds:
                cached = EasyCacheNode.execute(s.patcher, threshold, 0.15, 0.95, False).result[0]
                calls["n"] = 0
                v1, a1 = s.core_sample(cached, conds, latent, seed, steps)
                row = {"reuse_threshold": threshold, "forwards": calls["n"], "video_rel_l1": _relative_l1(v1, v0),
                       "audio_rel_l1": _relative_l1(a1, a0)}
                # the same forward budget spent on a shorter schedule (two forwards a step)
                budget_steps = max(1, row["forwards"] // 2)
                v2, a2 = s.core_sample(s.patcher, conds, latent, seed, budget_steps)
                row["shorter_schedule"] = {"steps": budget_steps, "video_rel_l1": _relative_l1(v2, v0),
                                           "audio_rel_l1": _relative_l1(a2, a0)}
                case["cached"].append(row)
            v3, a3 = s.core_sample(s.patcher, conds, latent, seed + 100, steps)
            case["other_seed"] = {"video_rel_l1": _relative_l1(v3, v0), "audio_rel_l1": _relative_l1(a3, a0)}
            cases.append(case)
        seed, prompt, duration = CASES[2]
        untouched = _input_survives_a_writing_wrapper(s, s.prompts(prompt),
                                                      s.api.empty_latent(s.joint, duration, 64, 64), seed, 4)
    finally:
        dm_cls._forward = original
    return {"steps": steps, "size": "64x64", "cases": cases, "input_survives_writing_wrapper": untouched}


def check_compile() -> dict:
    """Core TorchCompileModel's wrapper on our MODEL on the CPU (inductor)."""
    import torch
    from comfy_api.torch_helpers import set_torch_compile_wrapper

    s = Setup()
    seed, prompt, duration = CASES[2]
    conds = s.prompts(prompt)
    latent = s.api.empty_latent(s.joint, duration, 64, 64)
    v0, a0 = s.core_sample(s.patcher, conds, latent, seed, 2)
    compiled = s.patcher.clone()
    set_torch_compile_wrapper(model=compiled, backend="inductor")
    try:
        t0 = time.perf_counter()
        v1, a1 = s.core_sample(compiled, conds, latent, seed, 2)
        return {"ran": True, "seconds": time.perf_counter() - t0, "video_diff": maxdiff(v1, v0),
                "audio_diff": maxdiff(a1, a0), "torch": torch.__version__}
    except Exception as exc:  # reported, not hidden: the test says why compile does not apply
        return {"ran": False, "error": f"{type(exc).__name__}: {str(exc)[:800]}", "torch": torch.__version__}


def _small_ovi(dtype_name: str, folder: Path, prefix: str = "", damage: str | None = None) -> tuple[Path, dict]:
    """An Ovi-shaped checkpoint with random weights (Ovi key names, widths a multiple of Ovi's head size)."""
    import torch
    from safetensors.torch import save_file

    cfg_mod = pack("models.config")
    keys = pack("model_loader.ovi_keys")
    video = cfg_mod.TowerConfig(patch_size=(1, 2, 2), in_dim=48, out_dim=48, dim=128, ffn_dim=256, num_layers=2,
                                text_dim=64, num_heads=1)
    audio = cfg_mod.TowerConfig(patch_size=(1,), in_dim=20, out_dim=20, dim=128, ffn_dim=256, num_layers=2,
                                text_dim=64, num_heads=1, temporal_rope_scaling_factor=0.19676)
    config = cfg_mod.FusionConfig(video=video, audio=audio)
    g = torch.Generator().manual_seed(11)
    sd = {}
    for name, shape in keys.fusion_shapes(config).items():
        t = torch.randn(shape, generator=g) * (0.02 if len(shape) > 1 else 0.1)
        if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or ".norm" in name:
            t = t + 1
        if dtype_name == "bf16":
            sd[prefix + name] = t.to(torch.bfloat16)
        elif len(shape) > 1 and not name.endswith("modulation") and "fp8" in dtype_name:
            if dtype_name == "fp8_scaled":
                scale = t.abs().max() / 448.0
                sd[prefix + name] = (t / scale).to(torch.float8_e4m3fn)
                sd[prefix + name[: -len(".weight")] + ".scale_weight"] = scale.reshape(()).float()
            else:
                sd[prefix + name] = t.to(torch.float8_e4m3fn)
        else:
            sd[prefix + name] = t.to(torch.bfloat16)
    if dtype_name == "fp8_scaled":
        sd[prefix + "scaled_fp8"] = torch.empty(0, dtype=torch.float8_e4m3fn)
    if damage == "shape":
        key = prefix + "audio_model.blocks.1.ffn.0.weight"
        sd[key] = sd[key][:, :100].contiguous()
    elif damage == "missing":
        del sd[prefix + "video_model.blocks.0.cross_attn.v_fusion.weight"]
    path = folder / f"ovi_small_{dtype_name}{'_prefixed' if prefix else ''}{'_' + damage if damage else ''}.safetensors"
    save_file(sd, str(path))
    return path, config.to_dict()


def _unet_loader(path: Path):
    import folder_paths
    import nodes

    folder_paths.add_model_folder_path("diffusion_models", str(path.parent))
    return nodes.UNETLoader().load_unet(path.name, "default")[0]


def check_unet_loader() -> dict:
    """Core Load Diffusion Model on small Ovi-shaped files: bf16, fp8 (with and without scales), prefixed."""
    s = Setup()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dtype_name, prefix in (("bf16", ""), ("bf16", "model.diffusion_model."), ("fp8_scaled", ""),
                                   ("fp8", ""), ("fp8_scaled", "model.diffusion_model.")):
            path, config = _small_ovi(dtype_name, Path(tmp), prefix)
            patcher = _unet_loader(path)
            model = patcher.model
            conds = s.prompts("a red ball bounces <AUDCAP>thud<ENDAUDCAP>")
            joint = pack("pipeline.types").JointModel(dit=model.diffusion_model.dit, spec=model.jointav_spec,
                                                      name=path.name, source=str(path))
            latent = s.api.empty_latent(joint, "5s", 64, 64)
            layout = model.diffusion_model.layout
            s.layout = layout
            v, a = s.core_sample(patcher, conds, latent, 0, 1)
            weight = model.diffusion_model.video_model.blocks[0].self_attn.q.weight
            results[f"{dtype_name}{' prefixed' if prefix else ''}"] = {
                "model": type(model).__name__, "config_matches": model.diffusion_model.config.to_dict() == config,
                "family": model.jointav_spec.family, "weight_dtype": str(weight.dtype),
                "ops": type(model.diffusion_model.video_model.blocks[0].self_attn.q).__qualname__,
                "scaled_fp8": str(model.model_config.scaled_fp8), "finite": bool(v.isfinite().all() and a.isfinite().all()),
                "video_shape": list(v.shape), "audio_shape": list(a.shape)}
            del patcher, model
    return results


def check_shortcut() -> dict:
    """JointAV Load Model on an Ovi-layout file: one copy of the weights, core-managed; today's JointAV Sampler
    runs on them and agrees with the core path on the same MODEL (Euler, skip layer 1, same seed)."""
    import torch

    s = Setup()
    loading = pack("comfy_native.loading")
    with tempfile.TemporaryDirectory() as tmp:
        path, _ = _small_ovi("bf16", Path(tmp))
        joint, patcher, clip = loading.load_for_node(str(path), weight_dtype="auto", attention_backend="auto",
                                                     device=torch.device("cpu"), offload="none", family="auto")
        shared = (joint.dit.video_model is patcher.model.diffusion_model.video_model
                  and joint.native is patcher and clip is None)
        s.layout = patcher.model.diffusion_model.layout
        conds = s.prompts("a red ball bounces <AUDCAP>thud<ENDAUDCAP>")
        latent = s.api.empty_latent(joint, "5s", 64, 64)
        ref_v, ref_a = s.reference(conds, latent, 3, 6, joint=joint, skip_layer=1)
        v, a = s.core_sample(patcher, conds, latent, 3, 6, skip_layer=1)
        # block swap asked for an Ovi file: said, not applied (core's partial loading streams these weights)
        warnings = []
        handler = logging.Handler()
        handler.emit = lambda record: warnings.append(record.getMessage())
        logging.getLogger().addHandler(handler)
        try:
            swapped, swapped_patcher, _ = loading.load_for_node(
                str(path), weight_dtype="auto", attention_backend="auto", device=torch.device("cpu"),
                offload="blocks 1", family="auto")
        finally:
            logging.getLogger().removeHandler(handler)
        return {"shared_weights": shared, "video": maxdiff(v, ref_v), "audio": maxdiff(a, ref_a),
                "magnitude": float(ref_v.abs().max()), "family": joint.spec.family,
                "offload_blocks_1": {"warnings": [w for w in warnings if "JointAV" in w],
                                     "one_copy": swapped.native is swapped_patcher
                                     and swapped.dit.video_model is swapped_patcher.model.diffusion_model.video_model,
                                     "offload": swapped.offload}}


def check_bad_input() -> dict:
    import comfy.model_detection
    import comfy.model_patcher
    import torch
    from safetensors.torch import save_file

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        # a non-Ovi state dict goes to core's own detection: the wrapper answers what core answers
        original = comfy.model_detection.detect_unet_config._jointav_original
        foreign = {"conv_in.weight": torch.zeros(8, 3, 3, 3), "conv_in.bias": torch.zeros(8)}
        out["foreign_result"] = repr(comfy.model_detection.detect_unet_config(foreign, ""))
        out["foreign_core_result"] = repr(original(foreign, ""))
        path = Path(tmp) / "not_ovi.safetensors"
        save_file(foreign, str(path))
        try:
            _unet_loader(path)
            out["foreign_file"] = "loaded?!"
        except Exception as exc:
            out["foreign_file"] = f"{type(exc).__name__}: {exc}"
        for damage in ("shape", "missing"):
            path, _ = _small_ovi("bf16", Path(tmp), "", damage)
            try:
                _unet_loader(path)
                out[f"damaged_{damage}"] = "loaded?!"
            except Exception as exc:
                out[f"damaged_{damage}"] = f"{type(exc).__name__}: {exc}"
            out[f"damaged_{damage}_path"] = str(path)
    guidance = pack("comfy_native.guidance")
    other = comfy.model_patcher.ModelPatcher(torch.nn.Linear(2, 2), torch.device("cpu"), torch.device("cpu"))
    try:
        guidance.JointAVGuider(other)
        out["guider_other_model"] = "accepted?!"
    except Exception as exc:
        out["guider_other_model"] = f"{type(exc).__name__}: {exc}"
    return out


def check_registration() -> dict:
    """register() on every load: one model entry, each core function wrapped once, even after a re-import."""
    import comfy.lora
    import comfy.model_detection
    import comfy.sd
    import comfy.supported_models

    reg = pack("comfy_native.registration")
    reg.register()
    reg.register()
    # a reload: the same files imported again as new modules
    spec = importlib.util.spec_from_file_location("jointav_reload", REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["jointav_reload"] = module
    spec.loader.exec_module(module)
    importlib.import_module("jointav_reload.comfy_native.registration").register()

    def depth(fn):
        n = 0
        while hasattr(fn, "_jointav_original"):
            fn, n = fn._jointav_original, n + 1
        return n

    entries = [m for m in comfy.supported_models.models if getattr(m, "unet_config", None) == {"image_model": "jointav_fusion"}]
    return {"entries": len(entries), "entry_module": entries[0].__module__,
            "detect_depth": depth(comfy.model_detection.detect_unet_config),
            "load_depth": depth(comfy.sd.load_diffusion_model), "lora_depth": depth(comfy.lora.model_lora_keys_unet)}


def check_nested_forward() -> dict:
    """The diffusion model fed newer core's unpacked [video, audio] gives what it gives for the packed tensor."""
    import torch

    s = Setup()
    dm = s.patcher.model.diffusion_model
    g = torch.Generator().manual_seed(0)
    video, audio = torch.randn(1, 16, 7, 8, 8, generator=g), torch.randn(1, 63, 20, generator=g)
    ctx = torch.randn(1, 64, 64, generator=g)
    t = torch.tensor([700.0])
    with torch.no_grad():
        packed = dm(dm.layout.pack(video, audio), t, ctx)
        nested = dm([video, audio], t, ctx)
    pv, pa = dm.layout.unpack(packed)
    return {"video_equal": bool(torch.equal(pv, nested[0])), "audio_equal": bool(torch.equal(pa, nested[1]))}


def check_bench(steps: int = 12, repeats: int = 8) -> dict:
    """DiT step time, core path (JointAV Guider + Noise + Solver through core's sampling: what the JointAV Sampler
    node runs) vs the library loop (what the node ran before, and the CLI runs), same model, input and seed,
    interleaved runs in one process; at the default model's default size and at its largest."""
    from dataclasses import replace

    s = Setup()
    solvers = pack("comfy_native.solvers")
    # the library loop on the MODEL's own DiT (as the node ran it on an Ovi file): same weights, same attention
    # kernel (core's optimized_attention), so the ratio is the sampling path's alone
    joint = replace(s.joint, dit=s.patcher.model.diffusion_model.dit)
    seed, prompt, _ = CASES[1]
    conds = s.prompts(prompt)
    rows = []
    for duration, size in (("2s", 64), ("3s", 128)):
        latent = s.api.empty_latent(s.joint, duration, size, size)
        sampler = solvers.jointav_sampler("unipc")
        sampler.jointav_solver = "unipc"
        s.reference(conds, latent, seed, 2, joint=joint, solver="unipc")
        s.core_sample(s.patcher, conds, latent, seed, 2, sampler=sampler)  # warm both
        ref_t, core_t = [], []
        for _ in range(repeats):
            t0 = time.perf_counter()
            s.reference(conds, latent, seed, steps, joint=joint, solver="unipc")
            ref_t.append((time.perf_counter() - t0) / steps)
            t0 = time.perf_counter()
            s.core_sample(s.patcher, conds, latent, seed, steps, sampler=sampler)
            core_t.append((time.perf_counter() - t0) / steps)
        pair_ratios = sorted(c / r for c, r in zip(core_t, ref_t))  # each pair ran back to back: same machine load
        rows.append({"duration": duration, "size": size, "library_step_s": min(ref_t), "core_path_step_s": min(core_t),
                     "ratio_of_best": min(core_t) / min(ref_t),
                     "ratio_median_of_pairs": pair_ratios[len(pair_ratios) // 2]})
    return {"steps": steps, "repeats": repeats, "rows": rows}


CHECKS = {name[len("check_"):]: fn for name, fn in globals().items() if name.startswith("check_")}

if __name__ == "__main__":
    name = sys.argv[1]
    boot(sys.argv[2:])
    result = CHECKS[name]()
    print("RESULT " + json.dumps(result))
