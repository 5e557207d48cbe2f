"""`python -m pipeline.drill`, kept so that existing commands work: the kill -9 fault drill lives in `ops.drill`.

Only runpy (standard library) is imported here, so this package keeps its import promise.
"""

import runpy

if __name__ == "__main__":
    runpy.run_module("ops.drill", run_name="__main__", alter_sys=True)
