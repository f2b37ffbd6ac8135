"""CI compiles the CUDA code it cannot run: every ``kernels/*.cu`` source, with the
options CuPy's RawModule would use, for sm_80 and sm_90, through NVRTC from the pip
wheel ``nvidia-cuda-nvrtc-cu12`` (the ``dev`` extra). No GPU and no CuPy needed.

Without NVRTC these tests skip with the reason, except in CI (``CI`` or ``FASTNN_CI``
set), where they fail: a CI run must not pass by skipping its only check of the CUDA
sources."""

from __future__ import annotations

import os
import re

import pytest
from fastnn.kernels import cuda, nvrtc

ARCHS = ("80", "90")


@pytest.fixture(scope="module")
def have_nvrtc():
    try:
        return nvrtc.version()
    except OSError as exc:
        if os.environ.get("FASTNN_CI") or os.environ.get("CI"):
            pytest.fail(f"CI must compile the CUDA sources, but {exc}", pytrace=False)
        pytest.skip(str(exc))


def compile_or_fail(text: str, arch: str, name: str) -> str:
    """PTX of ``text``, or a test failure that shows NVRTC's log."""
    try:
        return nvrtc.compile_ptx(text, cuda.nvrtc_options(arch), name)
    except nvrtc.NvrtcError as exc:
        pytest.fail(str(exc), pytrace=False)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("filename", cuda.SOURCES)
def test_cuda_sources_compile(have_nvrtc, filename, arch):
    ptx = compile_or_fail(cuda.source(filename), arch, filename)
    # every kernel the loader asks for is defined, under its extern "C" name
    missing = [s for s in cuda.symbols(filename) if f".entry {s}(" not in ptx]
    assert not missing, f"{filename} does not define {missing}"


def test_cuda_sources_compile_reports_a_broken_kernel(have_nvrtc):
    broken = cuda.source("elementwise.cu").replace("T z = Z[i];", "T z = Z[i] + undefined_name;", 1)
    assert broken != cuda.source("elementwise.cu")
    with pytest.raises(pytest.fail.Exception) as info:
        compile_or_fail(broken, "90", "broken.cu")
    msg = str(info.value)
    lines = (cuda.HERE / "elementwise.cu").read_text().splitlines()
    line = next(i for i, text in enumerate(lines, 1) if "T z = Z[i];" in text)
    # the log names the file's own line (the prelude is hidden by a #line directive)
    assert f'elementwise.cu({line}): error: identifier "undefined_name" is undefined' in msg
    assert msg.startswith("broken.cu failed to compile")


def test_cuda_sources_compile_reports_a_type_error(have_nvrtc):
    bad = 'extern "C" __global__ void k(float* x) { double* p = x; p[0] = 1; }'
    with pytest.raises(nvrtc.NvrtcError, match="float"):
        nvrtc.compile_ptx(bad, cuda.nvrtc_options("80"), "typed.cu")


def _exported_signatures(filename: str) -> dict[str, str]:
    """kernel name -> argument kinds, parsed from the FASTNN_EXPORT lines of a source."""
    text = cuda.source(filename).replace("\\\n", " ")
    gemm = re.search(r"#define FASTNN_GEMM_PARAMS\(T\)\s*(\(.*?\))", text)
    if gemm:
        text = text.replace("FASTNN_GEMM_PARAMS(T)", gemm.group(1))
    out = {}
    for name, params in re.findall(
        r"FASTNN_EXPORT\(\s*fastnn_(\w+?)(?:_##SFX)?,\s*(\(.*?\))", text
    ):
        if name.startswith("name"):
            continue  # the macro's own definition
        kinds = ""
        for p in params.strip("()").split(","):
            p = p.strip()
            kinds += (
                "p" if "*" in p else "l" if "fastnn_i64" in p else "d" if "double" in p else "i"
            )
        out[name] = kinds
    return out


@pytest.mark.parametrize("filename", cuda.SOURCES)
def test_loader_argument_table_matches_the_sources(filename):
    parsed = _exported_signatures(filename)
    table = {n: k for n, (src, k, _, _) in cuda.KERNELS.items() if src == filename}
    assert parsed == table


def test_no_fast_math_options():
    opts = " ".join(cuda.nvrtc_options("90"))
    assert "fast" not in opts and "--use_fast_math" not in opts
