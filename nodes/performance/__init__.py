"""Performance: Compile Model, torch.compile with a mode (CUDA graphs) through the host's
compile wrapper, so a small batch's saved UNet branch shows as saved time (``nodes.py``).
"""
