"""Training of the embedded default model (`default_model/jointav-default.safetensors`) from scratch.

Stages, each resumable from its last checkpoint in a work directory outside the repository:
  video_vae   the tiny video VAE (Wan2.2 blocks, 8x space, 4x time) on toy clips (weighted L1 + L2, light KL)
  audio_vae   the tiny MMAudio mel VAE on toy log-mels (L1 + L2, light KL)
  vocoder     the tiny BigVGAN on toy waveforms (log-mel L1 + multi-resolution STFT, no discriminator)
  vocoder_finetune  the vocoder fine-tuned on mels that went through the audio VAE (what generation gives it)
  encode      a fixed set of toy clips encoded once into joint latents + captions
  dit         the fusion DiT and the toy text encoder jointly, flow matching on the joint latents
  video_decoder  the video VAE's decoder fine-tuned with the encoder frozen (latents unchanged)
  bundle      everything written into the shipped bundle
  report      20 held-out captions through the CLI's pipeline, scored; default_model/TRAINING.md
`python -m jointav.training.train_default --stage dit --minutes 30 --resume` runs one stage.
"""
