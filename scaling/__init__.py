"""Scaling laws: the compute/inference-optimal planner, the sweep and the fit.

The sweep's results live in the report folder (``storage.layout.Layout.report_dir``) under these names,
which the report reads back; kept here, free of imports, so the report can ask without loading scipy.
"""

SCALING_JSON = "scaling.json"
SCALING_PNG = "scaling.png"
