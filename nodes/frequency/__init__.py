"""Frequencies: low/high bands of latents by FFT (``bands.py``), the per-step report and its
chart (``report.py``, ``chart.py``; all host-free); recording a sampling run and the forward
process (``recording.py``); Frequency Split, Trace Sampler and Forward Process (``nodes.py``);
the live chart itself is ``js/frequency_chart.js``.
"""
