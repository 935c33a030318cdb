"""The Triton kernel compiles for a real GPU (sm_90 PTX and cubin, no GPU needed), with the
IEEE-rounded square root and division and without FMA contraction, for each storage format.

The interpreter tests (tests/kernels/test_triton_interpreted.py) check the numbers; this checks that
the compiled path, which they do not run, builds. In a subprocess: the kernel module must be
imported without ``TRITON_INTERPRET``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("triton")

CODE = textwrap.dedent("""
    import triton, triton.language as tl
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from rmsprop.torch.kernels import triton_kernel as tk

    FLAGS = ["MAXIMIZE", "L2", "DECOUPLED", "AMSGRAD", "CENTERED", "BIAS_CORRECTION",
             "EPS_IN_SQRT", "MOMENTUM", "LR_IN_MOMENTUM", "NESTEROV"]
    FORMATS = {  # name: (PARAM_TYPE, STATE_TYPE, PARAM_BF16, STATE_BF16, F64)
        "f32": (tl.float32, tl.float32, False, False, False),
        "f64": (tl.float64, tl.float64, False, False, True),
        "bf16+f32": (tl.uint16, tl.float32, True, False, False),
        "f16+f16": (tl.float16, tl.float16, False, False, False),
    }
    fn = tk._rmsprop_kernel
    assert type(fn).__name__ == "JITFunction", type(fn)
    for name, (ptype, stype, pbf, sbf, f64) in FORMATS.items():
        scalar = "*fp64" if f64 else "*fp32"
        signature = {"addresses": "*i64", "n_tensors": "i32", "sizes": "*i64",
                     "block_tensor": "*i64", "block_start": "*i64", "corrections": scalar,
                     "hyper": scalar}
        constants = {**{flag: True for flag in FLAGS}, "PARAM_TYPE": ptype,
                     "STATE_TYPE": stype, "PARAM_BF16": pbf, "STATE_BF16": sbf, "F64": f64,
                     "COMPUTE": tl.float64 if f64 else tl.float32, "BLOCK_SIZE": tk.BLOCK}
        signature.update({key: "constexpr" for key in constants})
        source = ASTSource(fn=fn, signature=signature, constexprs={
            (fn.arg_names.index(key),): value for key, value in constants.items()})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                                  options={"enable_fp_fusion": False})
        ptx = compiled.asm["ptx"]
        width = "f64" if f64 else "f32"
        print(name, len(compiled.asm["cubin"]) > 0, f"sqrt.rn.{width}" in ptx,
              f"div.rn.{width}" in ptx, "fma.rn" not in ptx)
""")


@pytest.mark.slow  # 3-6 s (a compiler or a subprocess): the whole suite runs it
def test_kernel_compiles_for_sm90_with_ieee_rounding(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            env=env, timeout=600)
    if result.returncode != 0 and "ptxas" in result.stderr.lower() and "not found" in (
            result.stderr.lower()):
        pytest.skip("no ptxas in this Triton install")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.split("\n")
    assert [line for line in lines if line] == [
        f"{name} True True True True" for name in ("f32", "f64", "bf16+f32", "f16+f16")]
