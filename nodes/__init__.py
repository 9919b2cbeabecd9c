"""The shipped pack: one folder per feature, each with its host-free logic and its thin
ComfyUI glue side by side.

- ``guidance_cutoff``: drop one CFG branch after the shape stage (the paper's acceleration).
- ``eos_tokens``: split a prompt's conditioning into its [EOS] rows and its prompt tokens.
- ``frequency``: low/high-frequency bands of latents, the per-step trace and its chart.
- ``evaluation``: image metrics, Image Compare and the paper's table.
- ``performance``: Compile Model (torch.compile with CUDA graphs through the host's wrapper).
- ``demo_models``: checkpoints to try graphs without downloading weights.

In each folder ``nodes.py`` holds the node classes; modules listed in
``extension.HOST_FREE_MODULES`` import nothing of ComfyUI. Nothing here imports ComfyUI at
package import: ``extension.py`` registers each feature's ``nodes.py`` when ComfyUI loads the
pack.
"""
