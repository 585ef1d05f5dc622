"""Cameo profiles, consent records and conditioning builders."""
