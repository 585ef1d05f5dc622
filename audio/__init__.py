"""Audio: MMAudio VAE, BigVGAN vocoder, resampling and channel layout, WAV/FLAC writing. Plain PyTorch."""
