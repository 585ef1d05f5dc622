"""Prompt text: Ovi's markup for speech and sound descriptions, and text-encoder front ends."""
