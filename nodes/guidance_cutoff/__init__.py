"""Guidance cutoff: full classifier-free guidance while the shape forms, then one UNet branch.

``schedule.py`` (host-free) says when the text stops, in steps, fractions or sigmas, and
what is known of each evaluation's sigma; ``patch.py`` installs that on a cloned
ModelPatcher (ComfyUI's ``calc_cond_batch`` slot and a sampler wrapper); ``nodes.py`` holds
Guidance Cutoff (MODEL) and Cutoff Guider (GUIDER).
"""
