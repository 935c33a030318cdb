"""rmsprop.optax.rmsprop against rmsprop.torch.RMSprop, flavour by flavour.

Both are built from the same spec; this checks that the optax port passes every option through
(the flavour's presets, the options on top) and computes the same numbers in float32. Every
flavour exists in both, so every flavour is compared, each with its defaults and with two sets
of extra options.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rmsprop.optax as ro
from rmsprop.spec import FLAVORS
from rmsprop.torch import RMSprop
from optax_common import MATRIX_PROBLEM, Problem, max_error, run, schedule_of

RTOL = 1e-5  # |optax port - torch| / max(|torch|, 1), elementwise, every step

VARIANTS = {
    "defaults": {},
    "momentum-nesterov-centered-l2-amsgrad": {
        "momentum": 0.9, "nesterov": True, "centered": True, "weight_decay": 0.01,
        "amsgrad": True,
    },
    # Not centered: bias correction makes the first centered step divide by g^2 - g^2.
    "bias-maximize-decoupled-other-momentum-form": {
        "momentum": 0.9, "centered": False, "bias_correction": True, "maximize": True,
        "weight_decay": 0.01, "decoupled_weight_decay": True,
    },
}


def run_torch(problem: Problem, flavor: str, **options) -> list[dict[str, np.ndarray]]:
    names = list(problem.params0)
    params = [torch.tensor(problem.params0[n], requires_grad=True) for n in names]
    opt = RMSprop(params, lr=float(problem.lrs[0]), flavor=flavor, **options)
    trajectory = []
    for grads, lr in zip(problem.grads, problem.lrs):
        opt.param_groups[0]["lr"] = float(lr)
        for p, name in zip(params, names):
            p.grad = torch.tensor(grads[name])
        opt.step()
        trajectory.append({n: p.detach().numpy().copy() for n, p in zip(names, params)})
    return trajectory


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("flavor", list(FLAVORS))
def test_optax_port_matches_torch_optimizer(flavor, variant):
    options = dict(VARIANTS[variant])
    if variant.endswith("other-momentum-form"):
        # the momentum form the flavour does not use by default
        options["lr_in_momentum"] = not FLAVORS[flavor].preset.get("lr_in_momentum", False)
    theirs = run_torch(MATRIX_PROBLEM, flavor, **options)
    ours = run(ro.rmsprop(schedule_of(MATRIX_PROBLEM), flavor=flavor, **options), MATRIX_PROBLEM)
    err = max_error(ours, theirs)
    assert err <= RTOL, f"max error {err:.3g} > {RTOL:g}"


def test_flavor_presets_reach_the_optax_port():
    """A flavour changes the numbers (its preset is used), and explicit options override it."""
    lr = schedule_of(MATRIX_PROBLEM)
    tf = run(ro.rmsprop(lr, flavor="tensorflow"), MATRIX_PROBLEM)
    assert max_error(tf, run(ro.rmsprop(lr), MATRIX_PROBLEM)) > 1e-3
    # tensorflow = optax's structure with decay 0.9, eps 1e-10 and an initial scale of 1
    same = run(ro.rmsprop(lr, eps=1e-10, initial_scale=1.0), MATRIX_PROBLEM)
    assert max_error(tf, same) <= RTOL
