"""Checkpoint files: reading, format detection, key maps, config from shapes, dtype policy."""
