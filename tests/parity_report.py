"""Print the worst relative error of each flavour against its framework (not a test).

    python tests/parity_report.py

Runs the same cases as tests/frameworks/test_parity_*.py and prints, per framework and impl, the largest
elementwise relative error of the parameters over all steps and all cases.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import triton  # noqa: E402,F401  (before TensorFlow: see tests/conftest.py)

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers
sys.path.insert(0, str(Path(__file__).resolve().parent / "frameworks"))  # the parity tests

import test_parity_keras as keras_tests  # noqa: E402
import test_parity_optax as optax_tests  # noqa: E402
import test_parity_sb3 as sb3_tests  # noqa: E402
import test_parity_tensorflow as tf_tests  # noqa: E402
import test_parity_timm as timm_tests  # noqa: E402
from parity_common import IMPLS, PROBLEM, max_relative_error, run_ours  # noqa: E402


def cases():
    p = PROBLEM
    yield "tf.raw_ops", [(lambda c=c: tf_tests.run_raw_ops(p, **c), "tensorflow", c)
                         for c in tf_tests.COMBOS]
    yield "tf.compat.v1 RMSPropOptimizer", [
        (lambda c=c: tf_tests.run_tf1_optimizer(p, **c), "tensorflow", c)
        for c in tf_tests.COMBOS]
    yield "keras", [(lambda c=c: keras_tests.run_keras(p, **c), "keras", c)
                    for c in keras_tests.COMBOS]
    yield "optax", [(lambda c=c: optax_tests.run_optax(p, **c), "optax",
                     optax_tests.ours_options(c)) for c in optax_tests.COMBOS]
    yield "timm", [(lambda c=c: timm_tests.run_timm(p, **c), "timm",
                    timm_tests.ours_options(c)) for c in timm_tests.COMBOS]
    yield "sb3", [(lambda c=c: sb3_tests.run_sb3(p, **c), "sb3", c) for c in sb3_tests.COMBOS]


def main() -> None:
    for name, runs in cases():
        worst = dict.fromkeys(IMPLS, 0.0)
        for run, flavor, options in runs:
            theirs = run()
            for impl in IMPLS:
                ours = run_ours(PROBLEM, impl, flavor, **options)
                worst[impl] = max(worst[impl], max_relative_error(ours, theirs))
        figures = "  ".join(f"{impl} {err:.2e}" for impl, err in worst.items())
        print(f"{name:30s} {len(runs):3d} cases  max relative error: {figures}")


if __name__ == "__main__":
    main()
