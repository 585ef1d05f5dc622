"""The fusion DiT as a native ComfyUI model (imported only inside ComfyUI; the library never imports it).

registration: core model list entry and wrapped unet-config detection (Load Diffusion Model reads Ovi files)
model: the BaseModel subclass, its diffusion model over the FusionDiT, latent format and model config
latents: the joint latent as a core LATENT (packed on 0.3.x, NestedTensor on 0.38+)
guidance: JointAV guider (CFGGuider), noise and reference sigmas
text_encoder / loading / attention: the default's CLIP, MODEL building, optimized_attention adapter
"""
