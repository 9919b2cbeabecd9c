"""[EOS] tokens: which conditioning rows are [SOS], prompt, [EOS] or padding, per encoder and
chunk (``roles.py``, host-free); encoding, row replacement and swapping through the CLIP
(``conditioning.py``); EOS Split and EOS Swap (``nodes.py``).
"""
