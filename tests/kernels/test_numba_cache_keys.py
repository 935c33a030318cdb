"""numba keys a kernel's disk cache on the kernel's own file and closure only: each compiled
kernel must capture the fingerprints of the code it calls from other files (the element
function, rmsprop.element; the storage helpers, rmsprop.torch.kernels.numba_support), or an
edit there would leave stale compiled kernels in the cache."""

from __future__ import annotations

from rmsprop.element import CODE_FINGERPRINT
from rmsprop.torch.kernels import fused_cpu, numba_support
from rmsprop.torch.lean import kernel_cpu


def captured(dispatcher):
    return [cell.cell_contents for cell in dispatcher.py_func.__closure__ or ()]


def test_the_fused_kernel_captures_both_fingerprints():
    kernel = fused_cpu._kernel_for(False, False, True, "bf16", "f32")
    assert CODE_FINGERPRINT ^ numba_support.SUPPORT_FINGERPRINT in captured(kernel)


def test_the_lean_kernels_capture_both_fingerprints():
    variant = kernel_cpu.LeanVariant(False, True, False, False, False, "f32", "8bit", True)
    assert CODE_FINGERPRINT ^ numba_support.SUPPORT_FINGERPRINT in captured(
        kernel_cpu.kernel_for(variant))
    assert numba_support.SUPPORT_FINGERPRINT in captured(
        kernel_cpu._quantizer(kernel_cpu._FORMATS))


def test_the_helpers_fingerprint_is_the_file_contents():
    import hashlib
    from pathlib import Path

    text = Path(numba_support.__file__).read_bytes()
    assert numba_support.SUPPORT_FINGERPRINT == int(hashlib.sha256(text).hexdigest()[:15], 16)
    assert numba_support.SUPPORT_FINGERPRINT != int(
        hashlib.sha256(text + b"\n").hexdigest()[:15], 16)
