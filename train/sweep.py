"""`python -m train.sweep`, kept so that existing commands work: the scaling-law sweep lives in `scaling.sweep`.

Only runpy (standard library) is imported here, so this package keeps its import promise.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("scaling.sweep", run_name="__main__", alter_sys=True)
