"""Logic that needs no ComfyUI: schedule math, token roles, frequency bands, metrics.

Nothing here imports the host, so it is tested anywhere and reused by the node modules."""
