"""Precision chosen per machine: the dtype and training precision rules, with the capability check mocked."""

import logging

import pytest

from breastdx import runtime


@pytest.fixture
def native(bf16_cpu):
    return bf16_cpu


@pytest.mark.parametrize("is_native, validated, requested, want", [
    (True, ("float32", "bfloat16"), "auto", "bfloat16"),
    (False, ("float32", "bfloat16"), "auto", "float32"),
    (True, ("float32",), "auto", "float32"),
    (True, ("float32", "bfloat16"), "float32", "float32"),
    (False, ("float32",), "bfloat16", "bfloat16"),
    (False, ("float32",), None, "float32"),
    ("avx512_bf16", ("float32", "bfloat16"), "auto", "float32"),
    ("avx512_bf16", ("float32", "bfloat16"), "bfloat16", "bfloat16"),
])
def test_inference_dtype_table(native, is_native, validated, requested, want):
    native(is_native)
    dtype, reason = runtime.choose_inference_dtype(requested, validated, "cpu")
    assert dtype == want and reason


def test_one_log_line_says_what_and_why(native, caplog):
    native(False)
    with caplog.at_level(logging.INFO, logger="breastdx.runtime"):
        runtime.choose_inference_dtype("auto", ("float32", "bfloat16"), "cpu", model="busi-seg")
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and lines[0].startswith("busi-seg: inference in float32 (auto: ")
    assert "no native bfloat16" in lines[0]


def test_training_precision(native, caplog):
    native(False)
    assert runtime.choose_training_precision("auto", "cpu")[0] == "32"
    with caplog.at_level(logging.WARNING, logger="breastdx.runtime"):
        precision, reason = runtime.choose_training_precision("bf16-mixed", "cpu")
    assert precision == "32" and "falls back" not in reason and "instead" in reason
    assert any("no native bfloat16" in r.getMessage() for r in caplog.records)
    assert runtime.choose_training_precision("32", "cpu")[0] == "32"
    native(True)
    assert runtime.choose_training_precision("auto", "cpu")[0] == "bf16-mixed"
    assert runtime.choose_training_precision("bf16-mixed", "cpu")[0] == "bf16-mixed"
    with pytest.raises(ValueError, match="'precision' option must be one of auto, 32, bf16-mixed, 16-mixed. "
                                         "Got 'bf16' instead."):
        runtime.choose_training_precision("bf16", "cpu")


def test_validated_dtypes_reads_old_and_new_meta():
    assert runtime.validated_dtypes({}) == ("float32",)
    assert runtime.validated_dtypes({"inference": {"dtype": "bfloat16"}}) == ("float32", "bfloat16")
    assert runtime.validated_dtypes({"inference": {"validated_dtypes": ["bfloat16"]}}) == ("float32", "bfloat16")


def test_native_bf16_comes_from_the_cpu_flags(monkeypatch):
    runtime._cpuinfo.cache_clear()
    monkeypatch.setattr(runtime, "_cpuinfo", lambda: ("AMD EPYC", frozenset({"avx2", "fma"})))
    assert runtime.bf16_native_cpu() is False and runtime.vector_extensions() == "AVX2"
    monkeypatch.setattr(runtime, "_cpuinfo", lambda: ("Xeon", frozenset({"avx2", "avx512f", "avx512_bf16",
                                                                         "amx_bf16"})))
    assert runtime.bf16_native_cpu() is True
    assert runtime.vector_extensions() == "AVX-512, AVX512-BF16, AMX"
    summary = runtime.machine_summary()
    assert summary["cpu"] == "Xeon" and summary["bf16_native"] is True and summary["torch_threads"] >= 1


def test_avx512_bf16_without_amx_runs_auto_in_float32_and_trains_in_bf16(native, caplog):
    """AVX512-BF16 alone: auto inference stays float32 (measured faster end to end), an explicit bfloat16 is
    honoured without the emulation warning, and training still picks bf16-mixed."""
    native("avx512_bf16")
    with caplog.at_level(logging.INFO, logger="breastdx.runtime"):
        dtype, reason = runtime.choose_inference_dtype("auto", ("float32", "bfloat16"), "cpu", model="busi-seg")
        assert runtime.choose_inference_dtype("bfloat16", ("float32",), "cpu")[0] == "bfloat16"
    assert dtype == "float32" and "no AMX" in reason
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert runtime.choose_training_precision("auto", "cpu")[0] == "bf16-mixed"
    native("amx")
    assert runtime.choose_inference_dtype("auto", ("float32", "bfloat16"), "cpu")[0] == "bfloat16"


def test_a_long_running_process_runs_bfloat16_wherever_it_is_native(native):
    """The service declares itself long-running: there AVX512-BF16 is enough for auto; the flag is restored."""
    native("avx512_bf16")
    before = runtime.declare_long_running(True)
    try:
        assert runtime.choose_inference_dtype("auto", ("float32", "bfloat16"), "cpu")[0] == "bfloat16"
        assert runtime.choose_inference_dtype("auto", ("float32",), "cpu")[0] == "float32"
    finally:
        assert runtime.declare_long_running(before) is True
    assert runtime.choose_inference_dtype("auto", ("float32", "bfloat16"), "cpu")[0] == "float32"
    native("none")
    runtime.declare_long_running(True)
    try:
        assert runtime.choose_inference_dtype("auto", ("float32", "bfloat16"), "cpu")[0] == "float32"
    finally:
        runtime.declare_long_running(before)


def test_fp16_mixed_on_a_cpu_is_resolved_as_bf16(native, caplog):
    """Lightning turns ``16-mixed`` on a CPU into ``bf16-mixed`` (no float16 AMP there): on a CPU without native
    bfloat16 that would crawl, so it trains in float32 with a warning, as bf16-mixed does; on a GPU it is kept."""
    native(False)
    with caplog.at_level(logging.WARNING, logger="breastdx.runtime"):
        precision, reason = runtime.choose_training_precision("16-mixed", "cpu")
    assert precision == "32" and reason.startswith("--precision 16-mixed asked for") and "instead" in reason
    assert any("no native bfloat16" in r.getMessage() for r in caplog.records)
    native(True)
    precision, reason = runtime.choose_training_precision("16-mixed", "cpu")
    assert precision == "bf16-mixed" and "bfloat16 is native on cpu" in reason
    assert runtime.choose_training_precision("16-mixed", "cuda")[0] == "16-mixed"


def test_without_cpu_flags_native_bf16_asks_for_avx512_bf16_or_amx_not_plain_avx512(monkeypatch):
    """Off Linux (no /proc/cpuinfo): an AVX-512 CPU that emulates bfloat16 is not native, though oneDNN's own check
    (AVX512-BW/VL/DQ) says yes; AVX512-BF16 is native, and only AMX makes ``--dtype auto`` choose bfloat16."""
    import torch

    monkeypatch.setattr(runtime, "_cpuinfo", lambda: ("", frozenset()))
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True, raising=False)
    for bf16, amx, native, auto in ((False, False, False, False), (True, False, True, False), (True, True, True, True)):
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert (runtime.bf16_native_cpu(), runtime.bf16_auto_cpu()) == (native, auto)
