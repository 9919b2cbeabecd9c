"""Demo models: checkpoints to try graphs without downloading weights. ``tiny.py`` builds
seeded random-weight models from ComfyUI's own classes (images are noise); ``nodes.py`` holds
the Tiny Random Checkpoint node.
"""
