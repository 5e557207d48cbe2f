"""`python -m train.plan`, kept so that existing commands work: the compute- vs inference-optimal planner lives in `scaling.plan`.

Only runpy (standard library) is imported here, so this package keeps its import promise.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("scaling.plan", run_name="__main__", alter_sys=True)
