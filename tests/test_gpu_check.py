"""benchmarks/gpu_check.py on the CPU, as the suite runs it so that it cannot rot before a GPU comes."""

import json
import subprocess
import sys


def test_the_gpu_check_runs_on_cpu_and_writes_its_report(tmp_path):
    subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--device", "cpu", "--out", str(tmp_path), "--steps", "2"],
                   check=True, capture_output=True, text=True, timeout=600)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    variants = report["step_time"]["variants"]
    assert {"off", "A/A control", "fixed", "learned", "backward", "diagnostics every 10", "diagnostics every step", "gated", "diff"} <= set(variants)
    assert variants["off"]["ratio"] == 1.0 and all(v["median_ms"] > 0 for v in variants.values())
    assert report["step_time"]["tokens_per_sec"] > 0 and report["step_time"]["flops_per_step"] > 0
    assert report["cuda_tests"]["returncode"] == 0 and "skipped" in report["cuda_tests"]["summary"]
    assert report["fsdp"] == {"ran": False, "why": "--device cpu: the FSDP check needs CUDA (the CPU FSDP path is tests/test_fsdp.py, gloo)"}
    assert "| diagnostics every step |" in (tmp_path / "gpu_check.md").read_text()
