"""The Triton kernels compile for real GPUs (sm_80, sm_90), not only in the interpreter.

Compilation runs ahead of time with Triton's own LLVM and ptxas, so it needs no GPU; it runs
in a subprocess because this test session defines the kernels for the interpreter.
"""

import os
import subprocess
import sys
import textwrap

COMPILE = textwrap.dedent("""
    import sys
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    from models.neurons import triton_backend as tb

    ptr = "*" + sys.argv[1]
    common = dict(n="i32", decay="fp32", input_gain="fp32", bias="fp32", v_threshold="fp32",
                  v_reset="fp32")
    forward = dict(x_ptr=ptr, s_ptr=ptr, v_init_ptr="constexpr", v_out_ptr="*fp32", **common,
                   T="constexpr", HARD_RESET="constexpr", HAS_V_INIT="constexpr",
                   STORE_STATE="constexpr", BLOCK="constexpr")
    backward = dict(x_ptr=ptr, gs_ptr=ptr, gx_ptr=ptr, v_init_ptr="*fp32", gv_ptr="*fp32",
                    gv_init_ptr="*fp32", **common, alpha="fp32", T="constexpr",
                    T_POW2="constexpr", HARD_RESET="constexpr", DETACH_RESET="constexpr",
                    SURROGATE="constexpr", HAS_V_INIT="constexpr", HAS_GRAD_V="constexpr",
                    BLOCK="constexpr")
    scratch = {k: v for k, v in backward.items() if k not in ("T", "T_POW2")}
    scratch.update(h_ptr="*fp32", steps="i32")
    flags = dict(HARD_RESET=True, DETACH_RESET=False, SURROGATE=0, HAS_V_INIT=True,
                 HAS_GRAD_V=True)
    kernels = [
        (tb._forward_kernel, forward, dict(T=4, HARD_RESET=True, HAS_V_INIT=False,
                                           v_init_ptr=None, STORE_STATE=False, BLOCK=1024)),
        (tb._backward_kernel, backward, dict(T=4, T_POW2=4, BLOCK=512, **flags)),
        (tb._backward_kernel, backward, dict(T=7, T_POW2=8, BLOCK=256, **flags)),
        (tb._backward_scratch_kernel, scratch, dict(BLOCK=1024, **flags)),
    ]
    for capability in (80, 90):
        for fn, signature, constexprs in kernels:
            source = ASTSource(fn=fn, signature=signature, constexprs=constexprs)
            compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32))
            assert len(compiled.asm["cubin"]) > 1000
            print(fn.__name__, capability, "ok")
""")


def test_kernels_compile_to_gpu_code():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    for dtype in ("bf16", "fp32"):
        done = subprocess.run(
            [sys.executable, "-c", COMPILE, dtype], env=env, capture_output=True, text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        assert done.stdout.count(" ok") == 8
