"""Pinned numerics for the training stages: the same inputs give the same bytes on every CPU of
one reference level, x86-64-v3.

scikit-learn's solvers call OpenBLAS (bundled with numpy and SciPy, built with DYNAMIC_ARCH: it
picks its kernels by CPU at load time) and numpy's own SIMD loops (also dispatched by CPU), and a
parallel reduction adds in an order that depends on the thread count. Unpinned, the same commit
trains a model whose last bits depend on the machine, and ``dvc.lock`` only reproduces on a CPU
like the one that wrote it. The stage runner (``python -m training STAGE``, training/__main__.py,
which every stage command in training/dvc.yaml uses) calls :func:`pin` before numpy is imported:

- one thread for OpenBLAS and OpenMP, everywhere;
- on Linux x86-64 with AVX2 and FMA (x86-64-v3: Intel Haswell, AMD Excavator and every later
  x86-64 server or desktop CPU), OpenBLAS's ``Haswell`` kernels and numpy's dispatch capped at
  ``X86_V3``, so a CPU with AVX-512 computes what a CPU with AVX2 computes.

Elsewhere (arm64, an x86-64 CPU without AVX2, macOS) the libraries choose their own kernels: the
model is equivalent (the same predictions on the test split, metrics within
:data:`METRIC_TOLERANCE`) but not byte-identical, so ``dvc status`` after ``dvc repro`` shows it
changed. docs/training.md says what a user sees and does then.

Importing this module imports no numeric library; :func:`describe` reads the libraries actually
loaded, for the model card.
"""

from __future__ import annotations

import platform
import sys
from collections.abc import MutableMapping
from pathlib import Path

#: The CPU level whose machines all train byte-identical models.
REFERENCE_LEVEL = "x86-64-v3"
#: The OpenBLAS kernel set for that level (AVX2 + FMA).
OPENBLAS_KERNEL = "Haswell"
#: numpy's runtime-dispatch targets above X86_V3 (numpy 2.x names), switched off on the reference.
NUMPY_TARGETS_ABOVE_REFERENCE = ("X86_V4", "AVX512_ICL", "AVX512_SPR")
#: /proc/cpuinfo flags the reference kernels execute.
REFERENCE_FLAGS = frozenset({"avx2", "fma"})
#: Off the reference level a retrained model may differ in its last bits: its test-split
#: predictions are identical and each metric is within this absolute tolerance of the committed one.
METRIC_TOLERANCE = 1e-3

THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
CPUINFO = Path("/proc/cpuinfo")


def cpu_flags() -> frozenset[str]:
    """The first CPU's feature flags as Linux reports them; empty where there is no cpuinfo."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def on_reference_level() -> bool:
    """Whether this machine runs the reference kernels (Linux, x86-64, AVX2 and FMA)."""
    return (
        sys.platform == "linux"
        and platform.machine() in ("x86_64", "AMD64")
        and REFERENCE_FLAGS.issubset(cpu_flags())
    )


def pin(environ: MutableMapping[str, str]) -> dict[str, str]:
    """Set the variables that pin the numeric libraries in ``environ``; return what was set.

    Must run before numpy, SciPy or scikit-learn is imported in this process: the libraries read
    these variables once, when they load. Values already in ``environ`` are overridden: a run is
    reproducible only with these exact settings.
    """
    settings = dict.fromkeys(THREAD_VARIABLES, "1")
    if on_reference_level():
        settings["OPENBLAS_CORETYPE"] = OPENBLAS_KERNEL
        settings["NPY_DISABLE_CPU_FEATURES"] = " ".join(NUMPY_TARGETS_ABOVE_REFERENCE)
    environ.update(settings)
    return settings


def describe() -> str:
    """One line for the model card: the CPU level the numeric libraries ran at in this process.

    ``x86-64-v3`` when every loaded OpenBLAS runs the reference kernels on one thread, else
    ``native <machine> (<kernels>)``, e.g. ``native aarch64 (neoversen1)``.
    """
    from threadpoolctl import threadpool_info  # type: ignore[import-untyped]  # scikit-learn loads it

    blas = [info for info in threadpool_info() if info.get("internal_api") == "openblas"]
    kernels = sorted({str(info.get("architecture", "unknown")) for info in blas})
    single = all(info.get("num_threads") == 1 for info in blas)
    if kernels == [OPENBLAS_KERNEL] and single and on_reference_level():
        return REFERENCE_LEVEL
    return f"native {platform.machine()} ({', '.join(kernels) or 'no OpenBLAS'})"
