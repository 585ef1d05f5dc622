"""ComfyUI node classes (V3 schema). A thin layer over the core; the only place that imports ComfyUI."""
