"""The leaves of a pytree as the update reads them: real, or complex in one of two conventions.

Complex leaves have two established meanings in RMSProp:

- optax's (``optax.rmsprop``, Wirtinger calculus): v accumulates ``|g|^2 = Re(conj(g)*g)``,
  one real number per complex element; :func:`rmsprop.update.rmsprop_terms` does this for a
  complex array.
- torch's (``torch.optim.RMSprop`` runs on ``torch.view_as_real``): the real and imaginary
  parts are two independent real parameters, each with its own v. Here the leaf is viewed as
  ``(..., 2)`` real pairs (:func:`as_pairs`) for the update, and every state array is stored
  as a complex array of the parameter's shape holding the pair (as torch stores it).
"""

from typing import Any, overload

import jax
import jax.numpy as jnp

__all__ = ["checked_leaves", "is_complex", "as_pairs", "from_pairs"]


def checked_leaves(tree: Any, what: str, owner: str) -> tuple[list[Any], Any]:
    """The leaves and structure of ``tree``; a clear error for a leaf that is not a real or
    complex float (``owner`` names the transformation, ``what`` the argument)."""
    path_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    for path, leaf in path_leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.inexact):
            raise TypeError(
                f"{owner} needs floating-point (real or complex) leaves: "
                f"{what}{jax.tree_util.keystr(path)} has dtype {dtype} "
                "(leave it out with optax.masked)"
            )
    return [leaf for _, leaf in path_leaves], treedef


def is_complex(leaf: Any) -> bool:
    """Whether ``leaf`` (an array or a ``jax.ShapeDtypeStruct``) has a complex dtype."""
    return jnp.issubdtype(jnp.result_type(leaf), jnp.complexfloating)


@overload
def as_pairs(x: jax.ShapeDtypeStruct) -> jax.ShapeDtypeStruct: ...


@overload
def as_pairs(x: jax.Array) -> jax.Array: ...


def as_pairs(x: Any) -> jax.Array | jax.ShapeDtypeStruct:
    """A complex array as real pairs ``(..., 2)``: ``torch.view_as_real``'s layout (for a
    ``jax.ShapeDtypeStruct``, the struct of the pairs)."""
    if isinstance(x, jax.ShapeDtypeStruct):
        return jax.ShapeDtypeStruct((*x.shape, 2), jnp.finfo(x.dtype).dtype)
    return jnp.stack([jnp.real(x), jnp.imag(x)], axis=-1)


def from_pairs(pairs: jax.Array, dtype: Any) -> jax.Array:
    """The complex array of ``dtype`` whose real pairs are ``pairs`` (exact)."""
    return jax.lax.complex(pairs[..., 0], pairs[..., 1]).astype(dtype)
