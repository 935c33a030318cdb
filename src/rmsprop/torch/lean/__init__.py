"""Lean state: the optimizer state of ``state_precision="8bit"`` or ``"bf16"``
(docs/design.md, "The state formats").

One vocabulary: *lean state* is state stored in less than the parameter's precision; its
*storage* is ``"8bit"`` (8-bit *codes*, one per element, and one float32 scale per block) or
``"bf16"``; full-precision state is ``"full"``. The public option is ``state_precision``
(``"fp32"``, ``"bf16"``, ``"8bit"``).

* :mod:`.codes`: the 8-bit code formats (a leaf);
* :mod:`.storage`: how a parameter's state holds them, creation and conversion between
  storages, the state-dict keys;
* :mod:`.table`: what a lean step hands its kernel (addresses, random seeds, scalars), built
  once for both kernels;
* :mod:`.kernel_cpu`: the numba kernel that decodes the state, runs the update and encodes it;
  :mod:`.kernel_triton`: the same on the GPU (Triton);
* :mod:`.optimizer`: :class:`rmsprop.torch.RMSprop`'s side (checks, the step, loading).
"""
