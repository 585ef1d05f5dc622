"""The generation pipeline as plain functions over the core: load, encode prompt, make latents, sample,
decode. The CLI calls it end to end; the ComfyUI nodes call one function per block."""
