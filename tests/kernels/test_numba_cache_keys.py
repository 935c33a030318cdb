"""numba keys a kernel's disk cache on the kernel's own file and closure only: each compiled
kernel must capture the fingerprints of the code it calls from other files (the element
function, rmsprop.element; the storage helpers, rmsprop.torch.kernels.numba_support), or an
edit there would leave stale compiled kernels in the cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

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


def test_the_helpers_fingerprint_follows_an_edit_of_their_file(tmp_path):
    """A copy of numba_support.py imported from elsewhere: the same fingerprint unedited, a
    new one after an edit (a comment is enough: numba cannot tell what an edit changed)."""
    source = Path(numba_support.__file__).read_text()

    def fingerprint_of(text, name):
        path = tmp_path / f"{name}.py"
        path.write_text(text)
        spec = importlib.util.spec_from_file_location(f"rmsprop.torch.kernels.{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.SUPPORT_FINGERPRINT

    assert fingerprint_of(source, "support_copy") == numba_support.SUPPORT_FINGERPRINT
    assert fingerprint_of(source + "\n# an edit\n", "support_edited") != (
        numba_support.SUPPORT_FINGERPRINT)
