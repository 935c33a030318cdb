"""The lean-state Triton kernel (8-bit codes, bfloat16) compiles for a real GPU (sm_90 PTX and
cubin, no GPU needed): IEEE-rounded square root and division, no FMA contraction and no
flush of subnormals (``.ftz``), so that the compiled kernel rounds as the interpreted one that
tests/lean_state/test_triton_lowbit.py checks against the CPU kernel. In a subprocess: the kernel module
must be imported without ``TRITON_INTERPRET``.
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
    from rmsprop.torch.lean import kernel_triton as tk

    FLAGS = ["MAXIMIZE", "L2", "DECOUPLED", "AMSGRAD", "CENTERED", "BIAS_CORRECTION",
             "EPS_IN_SQRT", "MOMENTUM", "LR_IN_MOMENTUM", "NESTEROV"]
    VARIANTS = {  # name: (PARAM_TYPE, PARAM_BF16, Q8, STOCHASTIC)
        "8bit-f32": (tl.float32, False, True, True),
        "8bit-nearest-f16": (tl.float16, False, True, False),
        "8bit-bf16": (tl.uint16, True, True, True),
        "bf16-f32": (tl.float32, False, False, True),
    }
    fn = tk._lowbit_kernel
    assert type(fn).__name__ == "JITFunction", type(fn)
    for name, (ptype, pbf, q8, stochastic) in VARIANTS.items():
        signature = {"addresses": "*i64", "n_tensors": "i32", "sizes": "*i64",
                     "program_tensor": "*i64", "program_block": "*i64", "corrections": "*fp32",
                     "hyper": "*fp32", "seeds": "*i64"}
        constants = {**{flag: True for flag in FLAGS}, "PARAM_TYPE": ptype, "PARAM_BF16": pbf,
                     "Q8": q8, "STOCHASTIC": stochastic, "ROWS_PER_PROGRAM": tk.ROWS,
                     "QBLOCK": 256, **tk._FORMATS}
        signature.update({key: "constexpr" for key in constants})
        source = ASTSource(fn=fn, signature=signature, constexprs={
            (fn.arg_names.index(key),): value for key, value in constants.items()})
        compiled = triton.compile(source, target=GPUTarget("cuda", 90, 32),
                                  options={"enable_fp_fusion": False})
        ptx = compiled.asm["ptx"]
        print(name, len(compiled.asm["cubin"]) > 0, "sqrt.rn.f32" in ptx, "div.rn.f32" in ptx,
              "fma.rn" not in ptx, ".ftz" not in ptx)
""")


@pytest.mark.slow  # 3-6 s (a compiler or a subprocess): the whole suite runs it
def test_lowbit_kernel_compiles_for_sm90_with_ieee_rounding(tmp_path):
    env = {key: value for key, value in os.environ.items() if key != "TRITON_INTERPRET"}
    env["TRITON_CACHE_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                            env=env, timeout=600)
    if result.returncode != 0 and "ptxas" in result.stderr.lower() and "not found" in (
            result.stderr.lower()):
        pytest.skip("no ptxas in this Triton install")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.split("\n") if line]
    assert lines == [f"{name} True True True True True" for name in
                     ("8bit-f32", "8bit-nearest-f16", "8bit-bf16", "bf16-f32")]
