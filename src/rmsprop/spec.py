"""The RMSProp options as one frozen, validated object, and the framework flavours.

Every backend (the float64 reference, the torch kernels, the optax transformation, the NumPy
optimizer) reads its options from an :class:`RMSpropSpec`. A *flavour* is a named preset of
those options that reproduces one framework's RMSProp (see ``docs/flavors.md``).

The update the options describe (docs/design.md, "The update"), per tensor, at step t = 1, 2, ...::

    g <- -g                                  if maximize
    g <- g + wd*theta                        if weight_decay and not decoupled_weight_decay
    theta <- theta - lr*wd*theta             if weight_decay and decoupled_weight_decay
    v <- alpha*v + (1-alpha)*g^2             v starts at initial_accumulator_value
    vmax <- max(vmax, v)                     if amsgrad (vmax replaces v below)
    gbar <- alpha*gbar + (1-alpha)*g         if centered
    v^ = v/(1-alpha^t), gbar^ likewise       if bias_correction
    s = max(v^ - gbar^^2, 0) if centered else v^
    d = sqrt(s) + eps   or   sqrt(s + eps)   if eps_in_sqrt
    u = g / d
    no momentum:      theta <- theta - lr*u
    torch form:       b <- mu*b + u;      theta <- theta - lr*b       (nesterov: lr*(u + mu*b))
    tf form:          b <- mu*b + lr*u;   theta <- theta - b          (nesterov: lr*u + mu*b)
                      (lr_in_momentum=True selects the tf form)

References: Hinton, lecture 6.5 (2012); Graves, arXiv:1308.0850 eq. 38-41 (centered);
Reddi, Kale & Kumar, ICLR 2018 (amsgrad); Loshchilov & Hutter, ICLR 2019 (decoupled decay).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, Mapping

from .suggest import did_you_mean

__all__ = [
    "RMSpropSpec",
    "Flavor",
    "FLAVORS",
    "IMPLS",
    "NONFINITE_POLICIES",
    "flavors",
    "check_impl",
    "check_lr",
    "resolve",
]

IMPLS = ("auto", "loop", "foreach", "fused", "triton")
NONFINITE_POLICIES = ("propagate", "raise", "skip")

_FLOAT_FIELDS = ("alpha", "eps", "weight_decay", "momentum", "initial_accumulator_value")
_BOOL_FIELDS = (
    "centered",
    "maximize",
    "nesterov",
    "eps_in_sqrt",
    "lr_in_momentum",
    "decoupled_weight_decay",
    "amsgrad",
    "bias_correction",
)


def _is_scalar_array(value: Any) -> bool:
    """A 0-d real NumPy or JAX array, or a 0-d real torch tensor (torch.optim takes them)."""
    if getattr(value, "ndim", None) != 0:
        return False
    dtype = getattr(value, "dtype", None)
    kind = getattr(dtype, "kind", None)
    if kind is not None:
        return kind in ("f", "i", "u")
    return type(value).__module__.partition(".")[0] == "torch" and (
        getattr(dtype, "is_floating_point", False)
        or str(dtype).startswith(("torch.int", "torch.uint"))
    )


def _check_real(name: str, value: Any) -> float:
    """A finite real number, or a TypeError/ValueError naming ``name`` and the value."""
    if isinstance(value, bool) or not (isinstance(value, numbers.Real) or _is_scalar_array(value)):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        raise ValueError(f"Invalid {name} value: {value} ({name} must be finite)") from None
    if not math.isfinite(value):
        raise ValueError(f"Invalid {name} value: {value} ({name} must be finite)")
    return value


def check_lr(lr: Any) -> float:
    """Validate a learning rate (``lr``): a finite real number >= 0. Returns it as a float."""
    value = _check_real("lr", lr)
    if value < 0.0:
        raise ValueError(f"Invalid learning rate: {value} (lr must be >= 0)")
    return value


def check_impl(impl: Any) -> str:
    """Validate an implementation name (``impl``)."""
    if impl not in IMPLS:
        raise ValueError(f"Invalid impl value: {impl!r} (impl must be one of {', '.join(IMPLS)})")
    return impl


@dataclass(frozen=True)
class RMSpropSpec:
    """Every option of the RMSProp family (the update is in the module docstring).

    Args:
        lr: learning rate eta (>= 0); ``None`` only where a flavour requires the user to give one.
        alpha: decay rho of the moving averages, in [0, 1). ``alpha = 1`` would freeze v; torch
            accepts it, we refuse it on purpose.
        eps: epsilon (>= 0), added to sqrt(s) or, with ``eps_in_sqrt``, to s.
        weight_decay: lambda (>= 0): L2 added to the gradient, or decoupled (see below).
        momentum: mu (>= 0).
        centered: divide by the root of the variance estimate v - gbar^2 (clamped at 0).
        maximize: ascend instead of descend (the gradient is negated; the user's tensor is not).
        nesterov: Nesterov look-ahead on the momentum buffer (needs ``momentum > 0``).
        eps_in_sqrt: ``sqrt(s + eps)`` (TensorFlow, Keras, optax) instead of ``sqrt(s) + eps``.
        initial_accumulator_value: v0 (>= 0); 1.0 in TF1 and its ports.
        lr_in_momentum: the TensorFlow momentum form (lr inside the buffer).
        decoupled_weight_decay: ``theta -= lr*wd*theta`` before the step, instead of L2.
        amsgrad: use the running maximum of v (Reddi et al. 2018).
        bias_correction: divide v (and gbar) by ``1 - alpha**t`` (as Adam and optax do).
        flavor: the preset these options came from (informational once resolved).
        nonfinite: what a step does with a non-finite gradient: ``"propagate"`` (as torch),
            ``"raise"`` (raise before anything changes) or ``"skip"`` (skip and count the step).
    """

    lr: float | None = 1e-2
    alpha: float = 0.99
    eps: float = 1e-8
    weight_decay: float = 0.0
    momentum: float = 0.0
    centered: bool = False
    maximize: bool = False
    nesterov: bool = False
    eps_in_sqrt: bool = False
    initial_accumulator_value: float = 0.0
    lr_in_momentum: bool = False
    decoupled_weight_decay: bool = False
    amsgrad: bool = False
    bias_correction: bool = False
    flavor: str = "pytorch"
    nonfinite: str = "propagate"

    def __post_init__(self) -> None:
        if self.lr is not None:
            object.__setattr__(self, "lr", check_lr(self.lr))
        for name in _FLOAT_FIELDS:
            object.__setattr__(self, name, _check_real(name, getattr(self, name)))
        for name in _BOOL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, bool):
                # numpy's bool scalar (numpy.bool_, called numpy.bool in NumPy 2) and 0-d bool
                # arrays (NumPy, JAX), as optax takes them
                if str(getattr(value, "dtype", "")) == "bool" and getattr(value, "shape", 0) == ():
                    object.__setattr__(self, name, bool(value))
                else:
                    raise TypeError(f"{name} must be a bool, got {value!r} ({type(value).__name__})")
        if not 0.0 <= self.alpha < 1.0:
            raise ValueError(f"Invalid alpha value: {self.alpha} (alpha must be in [0, 1))")
        if self.eps < 0.0:
            raise ValueError(f"Invalid epsilon value: {self.eps} (eps must be >= 0)")
        if self.momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {self.momentum} (momentum must be >= 0)")
        if self.weight_decay < 0.0:
            raise ValueError(
                f"Invalid weight_decay value: {self.weight_decay} (weight_decay must be >= 0)"
            )
        if self.initial_accumulator_value < 0.0:
            raise ValueError(
                "Invalid initial_accumulator_value value: "
                f"{self.initial_accumulator_value} (initial_accumulator_value must be >= 0)"
            )
        if self.nesterov and self.momentum <= 0.0:
            raise ValueError(
                f"nesterov=True requires momentum > 0, got momentum={self.momentum}"
            )
        if self.flavor not in FLAVORS:
            raise ValueError(
                f"Invalid flavor value: {self.flavor!r} "
                f"(flavor must be one of {', '.join(FLAVORS)})"
            )
        if self.nonfinite not in NONFINITE_POLICIES:
            raise ValueError(
                f"Invalid nonfinite value: {self.nonfinite!r} "
                f"(nonfinite must be one of {', '.join(NONFINITE_POLICIES)})"
            )

    def replace(self, **changes: Any) -> "RMSpropSpec":
        """A copy with ``changes`` applied (and validated)."""
        return dataclasses.replace(self, **changes)

    def options(self) -> dict[str, Any]:
        """The options as a plain dict (JSON-serialisable)."""
        return dataclasses.asdict(self)


OPTION_NAMES = tuple(f.name for f in dataclasses.fields(RMSpropSpec))


@dataclass(frozen=True)
class Flavor:
    """A framework's RMSProp as a preset of :class:`RMSpropSpec` options."""

    name: str
    reproduces: str
    source: str
    preset: Mapping[str, Any]
    requires_lr: bool = False
    centered_note: str = ""


_TF_STRUCTURE = {"eps_in_sqrt": True, "lr_in_momentum": True}

FLAVORS: dict[str, Flavor] = {
    flavor.name: flavor
    for flavor in (
        Flavor(
            "pytorch",
            "torch.optim.RMSprop",
            "torch/optim/rmsprop.py (torch 2.13)",
            {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8},
            centered_note="sqrt(v - gbar^2) + eps, unclamped: NaN once rounding makes "
            "v - gbar^2 negative (tests/frameworks/test_parity_torch.py shows it); bit-identical to ours "
            "wherever torch's value is a number",
        ),
        Flavor(
            "tensorflow",
            "tf.compat.v1.train.RMSPropOptimizer and the raw ops ApplyRMSProp / "
            "ApplyCenteredRMSProp",
            "tensorflow/core/kernels/training_ops.cc (ApplyRMSProp, ApplyCenteredRMSProp); "
            "tensorflow/python/training/rmsprop.py (defaults; ms slot initialised to ones)",
            {"lr": None, "alpha": 0.9, "eps": 1e-10, "initial_accumulator_value": 1.0,
             **_TF_STRUCTURE},
            requires_lr=True,
            centered_note="sqrt(ms - mg^2 + eps), unclamped: NaN once rounding makes "
            "ms - mg^2 < -eps; its op order ms += (g^2 - ms)(1 - rho) lets a constant gradient "
            "converge exactly, so the constant-gradient probe of the parity tests stays finite",
        ),
        Flavor(
            "keras",
            "keras.optimizers.RMSprop (Keras 3)",
            "keras/src/optimizers/rmsprop.py (update_step), keras/src/optimizers/"
            "base_optimizer.py (_apply_weight_decay: theta - theta*wd*lr before the update)",
            {"lr": 1e-3, "alpha": 0.9, "eps": 1e-7, "decoupled_weight_decay": True,
             **_TF_STRUCTURE},
            centered_note="sqrt(v - gbar^2 + eps), unclamped: NaN once rounding makes "
            "v - gbar^2 < -eps (tests/frameworks/test_parity_keras.py shows it)",
        ),
        Flavor(
            "optax",
            "optax.rmsprop (incl. nesterov, bias_correction, initial_scale)",
            "optax/_src/alias.py, optax/_src/transform.py (scale_by_rms, scale_by_stddev, trace)",
            {"lr": None, "alpha": 0.9, "eps": 1e-8, **_TF_STRUCTURE},
            requires_lr=True,
            centered_note="rsqrt(nu - mu^2 + eps) (or 1/(sqrt(nu - mu^2) + eps)), unclamped: "
            "NaN once rounding makes it negative (tests/frameworks/test_parity_optax.py shows it); with "
            "bias_correction from initial_scale=0 the first step's variance is 0 in exact "
            "arithmetic, so rounding sets that step on either side",
        ),
        Flavor(
            "timm",
            "timm.optim.RMSpropTF",
            "timm/optim/rmsprop_tf.py (timm 1.0: square_avg starts at ones, eps in the root, "
            "lr_in_momentum=True, decoupled_decay option)",
            {"lr": 1e-2, "alpha": 0.9, "eps": 1e-10, "initial_accumulator_value": 1.0,
             **_TF_STRUCTURE},
            centered_note="sqrt(v - gbar^2 + eps), unclamped, with TF's op order: NaN once "
            "rounding makes v - gbar^2 < -eps (the constant-gradient probe stays finite)",
        ),
        Flavor(
            "sb3",
            "stable_baselines3.common.sb2_compat.rmsprop_tf_like.RMSpropTFLike",
            "stable_baselines3/common/sb2_compat/rmsprop_tf_like.py",
            {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8, "initial_accumulator_value": 1.0,
             "eps_in_sqrt": True},
            centered_note="sqrt(v - gbar^2 + eps), unclamped: NaN once rounding makes "
            "v - gbar^2 < -eps (tests/frameworks/test_parity_sb3.py shows it)",
        ),
        Flavor(
            "graves",
            "Graves (2013), Generating Sequences With RNNs, eq. 38-41",
            "arXiv:1308.0850, section 4, eq. 38-41",
            {"lr": 1e-4, "alpha": 0.95, "eps": 1e-4, "momentum": 0.9, "centered": True,
             **_TF_STRUCTURE},
            centered_note="sqrt(n - g^2 + 1e-4) in exact arithmetic, where n - g^2 >= 0; "
            "the paper says nothing of rounding",
        ),
        Flavor(
            "dqn",
            "Mnih et al. (2015) DQN release (centered RMSProp, eps inside the root)",
            "DeepMind dqn/NeuralQLearner.lua, qLearnMinibatch (Nature 2015 release)",
            {"lr": 2.5e-4, "alpha": 0.95, "eps": 0.01, "centered": True, "eps_in_sqrt": True},
            centered_note="sqrt(g2 - g^2 + 0.01), unclamped (Lua Torch): NaN once rounding "
            "makes g2 - g^2 < -0.01, which takes large gradients",
        ),
        Flavor(
            "hinton",
            "Hinton's lecture 6.5 (2012), as the article states it",
            "Coursera Neural Networks for Machine Learning, lecture 6.5",
            {"lr": 1e-3, "alpha": 0.9, "eps": 1e-8},
        ),
    )
}


def flavors() -> dict[str, str]:
    """The flavour names, each with one line on what it reproduces."""
    return {name: flavor.reproduces for name, flavor in FLAVORS.items()}


def resolve(flavor: str = "pytorch", **explicit: Any) -> RMSpropSpec:
    """The spec of ``flavor`` with the explicitly given options on top.

    Options the user passed win over the preset. A flavour whose framework has no default
    learning rate raises a ``ValueError`` when ``lr`` is not given.
    """
    if flavor not in FLAVORS:
        raise ValueError(
            f"Invalid flavor value: {flavor!r} (flavor must be one of {', '.join(FLAVORS)})"
            + did_you_mean(flavor, FLAVORS)
        )
    unknown = set(explicit) - set(OPTION_NAMES)
    if unknown:
        raise TypeError(f"unknown RMSProp option(s): {', '.join(sorted(unknown))}")
    preset = FLAVORS[flavor]
    options = {**preset.preset, **explicit, "flavor": flavor}
    if options.get("lr") is None and preset.requires_lr:
        raise ValueError(
            f"flavor={flavor!r} requires a learning rate: pass lr "
            f"({preset.reproduces} has no default learning rate)"
        )
    return RMSpropSpec(**options)
