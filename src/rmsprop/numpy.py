"""``rmsprop.numpy.RMSprop``: the RMSProp family for plain NumPy arrays.

For code without autograd (teaching, small models, NumPy-only pipelines): the optimizer holds
the user's arrays and changes them in place on :meth:`RMSprop.step`, as a torch optimizer
changes its parameters. The math is :func:`rmsprop.update.rmsprop_update` over ``numpy``, the
very function :mod:`rmsprop.reference` runs, computed in each array's own dtype.
"""

from __future__ import annotations

import copy
from typing import Any, Hashable, Iterator, Mapping, Sequence

import numpy as np

from ._defaults import explicit, flavor_default
from .errors import NonFiniteGradientError
from .spec import OPTION_NAMES, RMSpropSpec, check_lr, resolve
from .update import init_state, rmsprop_update, state_keys

__all__ = ["RMSprop", "NonFiniteGradientError"]

_STATE_DICT_KEYS = ("options", "state", "skipped_steps")


class RMSprop:
    r"""RMSProp over a list (or dict) of NumPy arrays, updated in place.

    The positional arguments and defaults are those of ``torch.optim.RMSprop``; every other
    option of :mod:`rmsprop.spec` is keyword-only. The update (all options in the spec)::

        v <- alpha*v + (1 - alpha)*g^2
        theta <- theta - lr * g / (sqrt(v) + eps)

    Args:
        params: a list (or tuple) or a dict of writeable float16/32/64 ``np.ndarray``; the
            arrays themselves are updated (``np.copyto``), so views the caller holds follow.
        lr, alpha, eps, weight_decay, momentum, centered: as in ``torch.optim.RMSprop``
            (defaults: the flavour's; ``pytorch``: 1e-2, 0.99, 1e-8, 0, 0, False).

    Keyword-only args (``None``: the flavour's choice):
        maximize, nesterov, eps_in_sqrt, initial_accumulator_value, lr_in_momentum,
        decoupled_weight_decay, amsgrad, bias_correction: see :class:`rmsprop.RMSpropSpec`.
        flavor: a framework preset, see :func:`rmsprop.flavors` (default ``"pytorch"``).
        nonfinite: ``"propagate"``, ``"raise"`` (:class:`NonFiniteGradientError`, nothing
            changes) or ``"skip"`` (the step is skipped and counted in ``skipped_steps``).

    Example:
        >>> import numpy as np
        >>> from rmsprop.numpy import RMSprop
        >>> w = np.array([1.0, -2.0])
        >>> opt = RMSprop([w], lr=0.01)
        >>> for _ in range(3):
        ...     opt.step([2 * w])        # the gradient of sum(w**2)
        >>> w.round(3)                   # w itself changed
        array([ 0.78 , -1.775])

    .. warning:: Complex arrays are refused (torch updates their real and imaginary parts
       apart: pass ``x.view(float_dtype)`` of a complex array to get that). Each array keeps
       its own step count, as in torch: an array whose gradient is ``None`` is not stepped.
    """

    def __init__(
        self,
        params: Sequence[np.ndarray] | Mapping[Hashable, np.ndarray],
        lr: float = flavor_default(1e-2),
        alpha: float = flavor_default(0.99),
        eps: float = flavor_default(1e-8),
        weight_decay: float = flavor_default(0.0),
        momentum: float = flavor_default(0.0),
        centered: bool = flavor_default(False),
        *,
        maximize: bool | None = None,
        nesterov: bool | None = None,
        eps_in_sqrt: bool | None = None,
        initial_accumulator_value: float | None = None,
        lr_in_momentum: bool | None = None,
        decoupled_weight_decay: bool | None = None,
        amsgrad: bool | None = None,
        bias_correction: bool | None = None,
        flavor: str = "pytorch",
        nonfinite: str = "propagate",
    ) -> None:
        self.params = params
        self._keys = _check_params(params)
        given = {
            "lr": lr, "alpha": alpha, "eps": eps, "weight_decay": weight_decay,
            "momentum": momentum, "centered": centered, "maximize": maximize,
            "nesterov": nesterov, "eps_in_sqrt": eps_in_sqrt,
            "initial_accumulator_value": initial_accumulator_value,
            "lr_in_momentum": lr_in_momentum,
            "decoupled_weight_decay": decoupled_weight_decay, "amsgrad": amsgrad,
            "bias_correction": bias_correction, "nonfinite": nonfinite,
        }
        self._spec = resolve(flavor, **explicit(given))
        self._state: dict[Hashable, dict[str, Any]] = {}
        self._skipped_steps = 0

    # -- options --------------------------------------------------------------------------

    @property
    def spec(self) -> RMSpropSpec:
        """The options in force (``spec.lr`` is the current learning rate)."""
        return self._spec

    @property
    def lr(self) -> float:
        """The learning rate; set it to follow a schedule (validated: a number >= 0)."""
        lr = self._spec.lr
        assert lr is not None  # resolve() and load_state_dict() refuse a spec without one
        return lr

    @lr.setter
    def lr(self, value: float) -> None:
        self._spec = self._spec.replace(lr=check_lr(value))

    @property
    def skipped_steps(self) -> int:
        """How many steps ``nonfinite="skip"`` has skipped."""
        return self._skipped_steps

    @property
    def state(self) -> dict[Hashable, dict[str, Any]]:
        """Per array (list index or dict key): ``step`` and the moments (read them only)."""
        return self._state

    def _arrays(self) -> Iterator[tuple[Hashable, np.ndarray]]:
        for key in self._keys:
            yield key, self._param(key)

    def _param(self, key: Hashable) -> np.ndarray:
        params = self.params
        if isinstance(params, Mapping):
            return params[key]
        assert isinstance(key, int)  # _check_params: a list's keys are its indices
        return params[key]

    # -- the step -------------------------------------------------------------------------

    def step(self, grads: Sequence[Any] | Mapping[Hashable, Any]) -> None:
        """One step: ``grads`` has the structure of ``params`` (``None`` skips an array).

        Every gradient is checked before anything changes; a failed step changes nothing.
        """
        pairs = self._pair(grads)
        spec = self._spec
        if spec.nonfinite != "propagate":
            if not all(np.isfinite(grad).all() for _, _, grad in pairs):
                if spec.nonfinite == "raise":
                    raise NonFiniteGradientError(
                        "a gradient holds NaN or inf (nonfinite='raise'); parameters and "
                        "optimizer state are unchanged"
                    )
                self._skipped_steps += 1
                return
        results = []
        for key, param, grad in pairs:
            state = self._state.get(key)
            if state is None:
                state = {"step": 0, **init_state(param, spec, np)}
            step = state["step"] + 1
            moments = {name: state[name] for name in state_keys(spec)}
            new_param, new_moments = rmsprop_update(np, param, grad, moments, spec, spec.lr, step)
            new_state = {"step": step}
            for name, value in new_moments.items():  # 0-d math gives NumPy scalars
                new_state[name] = np.asarray(value, dtype=param.dtype)
            results.append((key, param, new_param, new_state))
        for key, param, new_param, new_state in results:
            np.copyto(param, new_param)
            self._state[key] = new_state

    def _pair(self, grads: Any) -> list[tuple[Hashable, np.ndarray, np.ndarray]]:
        """``(key, param, grad)`` for each array with a gradient, the gradient validated."""
        if isinstance(self.params, Mapping):
            if not isinstance(grads, Mapping):
                raise TypeError(f"grads must be a dict like params, got {type(grads).__name__}")
            if set(grads) != set(self._keys):
                raise ValueError(
                    f"grads must have the keys of params: missing "
                    f"{sorted(map(repr, set(self._keys) - set(grads)))}, unexpected "
                    f"{sorted(map(repr, set(grads) - set(self._keys)))}"
                )
        else:
            if isinstance(grads, (Mapping, np.ndarray)) or not isinstance(grads, Sequence):
                raise TypeError(
                    f"grads must be a list like params, got {type(grads).__name__}"
                )
            if len(grads) != len(self._keys):
                raise ValueError(
                    f"grads must have one entry per param: got {len(grads)} for "
                    f"{len(self._keys)} params"
                )
        pairs = []
        for key, param in self._arrays():
            grad = grads[key]
            if grad is None:
                continue
            grad = np.asarray(grad)
            real = np.issubdtype(grad.dtype, np.floating) or np.issubdtype(grad.dtype, np.integer)
            if not real:
                raise TypeError(f"grads[{key!r}] must be real numbers, got dtype {grad.dtype}")
            if grad.shape != param.shape:
                raise ValueError(
                    f"grads[{key!r}] has shape {grad.shape}, params[{key!r}] has {param.shape}"
                )
            pairs.append((key, param, grad.astype(param.dtype, copy=False)))
        return pairs

    # -- state dict -----------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """The options and state, as deep copies: ``{"options", "state", "skipped_steps"}``."""
        return {
            "options": self._spec.options(),
            "state": copy.deepcopy(self._state),
            "skipped_steps": self._skipped_steps,
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Load options and state from :meth:`state_dict` (copied, validated first).

        Raises ``TypeError``/``ValueError`` naming what does not fit (keys, shapes, dtypes,
        options); a failed load changes nothing.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a dict, got {type(state_dict).__name__}")
        if set(state_dict) != set(_STATE_DICT_KEYS):
            raise ValueError(
                f"state_dict must have the keys {list(_STATE_DICT_KEYS)}, got {sorted(state_dict)}"
            )
        options = state_dict["options"]
        if not isinstance(options, Mapping) or set(options) != set(OPTION_NAMES):
            raise ValueError(
                f"state_dict['options'] must have the keys {list(OPTION_NAMES)}, got "
                f"{sorted(options) if isinstance(options, Mapping) else type(options).__name__}"
            )
        if options["lr"] is None:
            raise ValueError("state_dict['options']['lr'] must be a number, got None")
        spec = RMSpropSpec(**options)
        skipped = state_dict["skipped_steps"]
        if isinstance(skipped, bool) or not isinstance(skipped, (int, np.integer)) or skipped < 0:
            raise ValueError(
                f"state_dict['skipped_steps'] must be an int >= 0, got {skipped!r}"
            )
        states = state_dict["state"]
        if not isinstance(states, Mapping):
            raise TypeError(
                f"state_dict['state'] must be a dict, got {type(states).__name__}"
            )
        unknown = [key for key in states if key not in self._keys]
        if unknown:
            raise ValueError(f"state_dict['state'] has entries for no param: {unknown!r}")
        loaded = {key: _checked_state(key, states[key], self._param(key), spec)
                  for key in self._keys if key in states}
        self._spec = spec
        self._state = loaded
        self._skipped_steps = int(skipped)


def _check_params(params: Any) -> list[Hashable]:
    """The keys (indices or dict keys) of ``params``, each a writeable real float array."""
    if isinstance(params, Mapping):
        keys = list(params)
    elif isinstance(params, (list, tuple)):
        keys = list(range(len(params)))
    else:
        raise TypeError(
            f"params must be a list or dict of numpy arrays, got {type(params).__name__}"
        )
    if not keys:
        raise ValueError("optimizer got an empty parameter list")
    for key in keys:
        param = params[key]
        if not isinstance(param, np.ndarray):
            raise TypeError(
                f"params[{key!r}] must be a numpy array (it is updated in place), got "
                f"{type(param).__name__}"
            )
        if np.issubdtype(param.dtype, np.complexfloating):
            raise TypeError(
                f"params[{key!r}] is complex ({param.dtype}): not supported; pass "
                "x.view(x.real.dtype) to update real and imaginary parts apart, as torch does"
            )
        if not np.issubdtype(param.dtype, np.floating):
            raise TypeError(f"params[{key!r}] must be a float array, got dtype {param.dtype}")
        if not param.flags.writeable:
            raise ValueError(f"params[{key!r}] is read-only: it cannot be updated in place")
    for i, first in enumerate(keys):
        for second in keys[i + 1:]:
            if np.may_share_memory(params[first], params[second]) and np.shares_memory(
                params[first], params[second]
            ):
                raise ValueError(
                    f"params[{first!r}] and params[{second!r}] share memory: each element "
                    "must belong to one param"
                )
    return keys


def _checked_state(
    key: Hashable, state: Any, param: np.ndarray, spec: RMSpropSpec
) -> dict[str, Any]:
    """A copy of one array's saved state, checked against ``param`` and ``spec``."""
    where = f"state_dict['state'][{key!r}]"
    if not isinstance(state, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(state).__name__}")
    expected = {"step", *state_keys(spec)}
    if set(state) != expected:
        raise ValueError(f"{where} must have the keys {sorted(expected)}, got {sorted(state)}")
    step = state["step"]
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"{where}['step'] must be an int >= 0, got {step!r}")
    checked: dict[str, Any] = {"step": int(step)}
    for name in state_keys(spec):
        value = state[name]
        if not isinstance(value, np.ndarray):
            raise TypeError(f"{where}[{name!r}] must be a numpy array, got {type(value).__name__}")
        if value.shape != param.shape or value.dtype != param.dtype:
            raise ValueError(
                f"{where}[{name!r}] has shape {value.shape} and dtype {value.dtype}; the param "
                f"has {param.shape} and {param.dtype}"
            )
        checked[name] = value.copy()
    return checked
