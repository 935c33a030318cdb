"""The functional form of the torch optimizer: one step over lists of tensors.

``rmsprop.torch.RMSprop`` gathers its tensors and calls :func:`rmsprop`; anyone keeping their
own state (as with ``torch.optim.rmsprop.rmsprop``) can call it directly. The implementation is
chosen here, in one place.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..errors import NonFiniteGradientError
from ..spec import RMSpropSpec, check_impl
from .kernels import KERNELS, TensorLists
from .kernels.capabilities import auto_impl, unsupported

__all__ = ["rmsprop", "choose_impl", "wants_torch_path", "NonFiniteGradientError"]


def choose_impl(
    impl: str, foreach: bool | None, params: Sequence[Tensor], *, torch_path: bool = False
) -> str:
    """The implementation to run: ``impl``, or for ``"auto"`` the one that fits.

    ``foreach`` (torch's argument) picks between ``"foreach"`` and ``"loop"`` when ``impl`` is
    ``"auto"``. Left to itself, ``"auto"`` with ``torch_path`` picks as torch does (``"foreach"``
    when every tensor is on a GPU, ``"loop"`` otherwise): torch's operations in torch's order,
    hence torch's numbers bit for bit (see :func:`wants_torch_path`). Without ``torch_path`` it
    takes the fastest: ``"fused"`` (numba) when every tensor is on the CPU and ``"triton"`` when
    every tensor is on a GPU, where the package is installed and the dtypes are supported (both
    do every option); otherwise ``"foreach"`` on GPU and ``"loop"``. An explicit ``impl`` that
    cannot run on ``params`` raises a ``ValueError`` saying why.
    """
    check_impl(impl)
    if foreach is not None:
        wanted = "foreach" if foreach else "loop"
        if impl not in ("auto", wanted):
            raise ValueError(f"foreach={foreach} contradicts impl={impl!r}")
        return wanted
    if impl != "auto":
        if impl not in KERNELS:
            raise ValueError(
                f"impl={impl!r} is not available (available: {', '.join(KERNELS)})"
            )
        problem = unsupported(impl, params)
        if problem:
            raise ValueError(problem)
        return impl
    fused_impl = None if torch_path else auto_impl(params)  # "fused" on CPU, "triton" on GPU
    if fused_impl:
        return fused_impl
    if params and all(p.device.type == "cuda" for p in params):
        return "foreach"
    return "loop"


def wants_torch_path(spec: RMSpropSpec, differentiable: bool = False,
                     capturable: bool = False) -> bool:
    """Whether ``impl="auto"`` runs torch's own path (loop on CPU, foreach on GPU).

    It does for the ``pytorch`` flavour, whose promise is ``torch.optim.RMSprop``'s numbers bit
    for bit (the fused kernels round differently: no FMA where torch's CPU kernels use one,
    none anywhere in the Triton kernel), and for ``differentiable`` and ``capturable``, which
    only torch's paths can do. The other flavours take the fused kernels.
    """
    return spec.flavor == "pytorch" or differentiable or capturable


def rmsprop(
    params: list[Tensor],
    grads: list[Tensor],
    square_avgs: list[Tensor],
    steps: list[Tensor],
    *,
    max_square_avgs: list[Tensor] | None = None,
    grad_avgs: list[Tensor] | None = None,
    momentum_buffers: list[Tensor] | None = None,
    spec: RMSpropSpec,
    lr: float | Tensor,
    impl: str = "auto",
    differentiable: bool = False,
) -> None:
    """One RMSProp step, in place, for every tensor of ``params``.

    Args:
        params, grads: the parameters and their gradients (``grads`` is only read).
        square_avgs, steps: v and the step count t (a scalar float tensor) of each parameter.
        max_square_avgs: the running max of v (needed with ``spec.amsgrad``).
        grad_avgs: the gradient averages (needed with ``spec.centered``).
        momentum_buffers: the momentum buffers (needed with ``spec.momentum > 0``).
        spec: the options (``spec.lr`` is not read: ``lr`` is).
        lr: this step's learning rate.
        impl: an implementation name, or ``"auto"`` (torch's own choice for the ``pytorch``
            flavour, the fused kernels for the others: see :func:`choose_impl`).
        differentiable: the step is to be differentiated (call it with grad mode on):
            ``"loop"`` or ``"foreach"`` build its autograd graph, ``"auto"`` takes ``"loop"`` as
            torch does, the fused kernels refuse (they write memory outside autograd).
    """
    _check_lists(
        params, spec, grads=grads, square_avgs=square_avgs, steps=steps,
        max_square_avgs=(max_square_avgs or []) if spec.amsgrad else None,
        grad_avgs=(grad_avgs or []) if spec.centered else None,
        momentum_buffers=(momentum_buffers or []) if spec.momentum > 0 else None,
    )
    if not params:
        return
    impl = choose_impl(impl, None, params,
                       torch_path=wants_torch_path(spec, differentiable=differentiable))
    if differentiable and impl not in ("loop", "foreach"):
        raise ValueError(
            f"differentiable=True runs impl='loop' or 'foreach', got impl={impl!r}: the fused "
            "kernels write memory outside autograd"
        )
    lr = lr.item() if isinstance(lr, Tensor) else float(lr)
    # t of this step; the step tensors are counted up only once the kernel has run, so a
    # kernel that refuses its tensors (before writing anything) leaves everything unchanged.
    step_values = [s.item() + 1 for s in steps] if spec.bias_correction else None
    tensors = TensorLists(
        params, grads, square_avgs, steps,
        max_square_avgs or [], grad_avgs or [], momentum_buffers or [],
    )
    KERNELS[impl](tensors, spec, lr, step_values)
    torch._foreach_add_(steps, 1.0)


def _check_lists(params: list[Tensor], spec: RMSpropSpec, **lists: list[Tensor] | None) -> None:
    """One tensor per parameter in every list the update reads (``None``: not needed), or a
    ValueError naming the list: a missing state list would otherwise skip part of the update."""
    for name, tensors in lists.items():
        if tensors is not None and len(tensors) != len(params):
            raise ValueError(
                f"{name} must hold one tensor per parameter ({len(params)}), got "
                f"{len(tensors)} (spec: momentum={spec.momentum}, centered={spec.centered}, "
                f"amsgrad={spec.amsgrad})"
            )
