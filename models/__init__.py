"""Architectures: the fusion DiT, the Wan2.2 VAE, and the attention dispatcher. Plain PyTorch."""
