"""The benchmark: metrics, the evaluation protocol, reports and the paper's published tables.

Modules that need no weights (metrics, roi_align, tracker, report) import only numpy/torch; modules that
need weights (lpips, features) load them from a local folder and say "not computed: weights not found at
PATH" when they are absent, never a made-up number.
"""
