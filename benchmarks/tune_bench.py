"""`fastnn tune` against scikit-learn's RandomizedSearchCV: ``fastnn bench --tune``
writing into ``benchmarks/results`` (see :mod:`fastnn.bench.tune`).

Run: ``python benchmarks/tune_bench.py [--trials 20] [--folds 5] [--jobs 0] [--note ...]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from fastnn.bench.tune import main

if __name__ == "__main__":
    np.seterr(all="ignore")
    main(["--out", str(Path(__file__).parent / "results"), *sys.argv[1:]])
