"""Training of the embedded default model (`default_model/jointav-default.safetensors`) from scratch.

Stages, each resumable from its last checkpoint in a work directory outside the repository:
  video_vae   the tiny Wan2.2-layout video VAE on toy clips (weighted L1 + L2, light KL)
  audio_vae   the tiny MMAudio mel VAE on toy log-mels (L1 + L2, light KL)
  vocoder     the tiny BigVGAN on toy waveforms (log-mel L1 + multi-resolution STFT, no discriminator)
  encode      a fixed set of toy clips encoded once into joint latents + captions
  dit         the fusion DiT and the toy text encoder jointly, flow matching on the joint latents
  bundle      everything written into the shipped bundle
`python -m jointav.training.train_default --stage dit --minutes 30 --resume` runs one stage.
"""
