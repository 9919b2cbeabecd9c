"""Evaluation: image metrics (L1, PSNR, SSIM, CLIP cosine; ``metrics.py``) and the paper's
table math (``paper_table.py``), both host-free; Image Compare and Paper Table (``nodes.py``).
"""
