"""The machine a benchmark ran on, and what each runtime computes with.

Used by :mod:`nplstm.bench` (and ``nplstm bench``, which prints
:func:`describe`): CPU model and vector extensions, NumPy's BLAS as
threadpoolctl sees it, the BLAS environment variables, versions, and per
runtime its engine, BLAS and threads.
"""

from __future__ import annotations

import os
import platform
import re

import numpy as np


def blas_info():
    """NumPy's BLAS as threadpoolctl sees it (kernel, version), and the env knobs."""
    info = {"numpy": np.__version__, "env": {k: os.environ[k] for k in (
        "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS",
        "MKL_NUM_THREADS") if k in os.environ}}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        info["blas"] = "threadpoolctl not installed"
        return info
    libs = [lib for lib in threadpool_info() if lib.get("user_api") == "blas"
            and "numpy" in lib.get("filepath", "")] or [
        lib for lib in threadpool_info() if lib.get("user_api") == "blas"]
    info["blas"] = [{k: lib.get(k) for k in ("internal_api", "architecture", "version",
                                             "threading_layer", "num_threads")}
                    | {"file": os.path.basename(lib.get("filepath", ""))} for lib in libs]
    return info


#: The vector extensions worth naming (``/proc/cpuinfo`` flags): results differ
#: between AVX2 and AVX-512 hosts.
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl",
                "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                "asimd", "sve")


def machine_info():
    model, flags = _cpu()
    info = {"platform": platform.platform(), "python": platform.python_version(),
            "cpu_count": os.cpu_count(), "processor": model,
            "vector_extensions": [f for f in VECTOR_FLAGS if f in flags]}
    for name in ("torch", "onnx", "onnxruntime", "numba"):
        info[name] = _version(name)
    return info


def _version(name):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _cpu():
    """The CPU's model name and its flags, from /proc/cpuinfo where there is one."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model is None:
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return model or platform.processor() or None, flags


def runtime_info(threads):
    """What each runtime computes with at ``threads`` (call inside the limits set)."""
    from . import _numba

    blas = blas_info().get("blas")
    b = blas[0] if isinstance(blas, list) and blas else {}
    numpy_blas = (f"NumPy {np.__version__}, {b.get('internal_api')} {b.get('version')} "
                  f"({b.get('architecture')} kernel), {b.get('num_threads')} thread{'' if b.get('num_threads') == 1 else 's'}"
                  if b else f"NumPy {np.__version__}, BLAS unknown ({blas})")
    engine = _numba.engine()
    large = ("one compiled loop calling NumPy's BLAS (cblas_sgemm) for the products"
             if engine == "numba" and _numba.blas_gemm(np.float32) is not None else
             "BLAS products through np.matmul + compiled elementwise")
    info = {"nplstm": f"engine {engine}" + (
        f" (numba {_version('numba')}: small batches one compiled loop, large batches "
        f"{large}, no threads of its own); " if engine == "numba" else "; ") + numpy_blas}
    if engine == "numba":
        info["nplstm_numpy"] = "engine numpy; " + numpy_blas
    torch = _optional("torch")
    if torch is not None:
        cfg = torch.__config__.show()
        blas_lib = re.search(r"BLAS_INFO=(\w+)", cfg)
        isa = re.search(r"CPU capability usage: (\w+)", cfg)
        info["torch"] = (f"torch {torch.__version__}, BLAS {blas_lib[1] if blas_lib else '?'}, "
                         f"{isa[1] if isa else '?'} kernels, oneDNN "
                         f"{'on' if torch.backends.mkldnn.is_available() else 'off'}, "
                         f"{torch.get_num_threads()} intra-op threads")
    if _optional("onnxruntime") is not None:
        info["onnxruntime"] = (f"onnxruntime {_version('onnxruntime')}, MLAS kernels, "
                               f"intra_op_num_threads={threads}, spinning off")
    return info


def _optional(name):
    try:
        return __import__(name)
    except ImportError:
        return None



def describe(info):
    """One paragraph: machine, versions, BLAS kernel."""
    m = info["machine"]
    blas = info["blas"].get("blas")
    if isinstance(blas, list) and blas:
        b = blas[0]
        kernel = (f"{b['internal_api']} {b['version']} ({b['architecture']} kernel, "
                  f"{b['threading_layer']})")
    else:
        kernel = str(blas)
    env = ", ".join(f"{k}={v}" for k, v in info["blas"]["env"].items()) or "none set"
    vec = " ".join(m.get("vector_extensions") or []) or "unknown"
    return (f"{m['processor']} ({m['cpu_count']} CPUs; vector extensions: {vec}), "
            f"{m['platform']}, Python {m['python']}; numpy {info['blas']['numpy']} with "
            f"{kernel}; numba {m.get('numba')}; torch {m['torch']}, onnxruntime "
            f"{m['onnxruntime']}, onnx {m['onnx']}; BLAS env: {env}")
