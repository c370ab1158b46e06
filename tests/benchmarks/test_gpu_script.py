"""`benchmarks/gpu.sh --smoke`: the GPU machine's script on its CPU path (tiny model), so that
the one prepared run on a lent GPU does not fail on the script itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KEYS = {
    "tests": r"\d+ passed",
    "image": r"image_1concept_ms=[\d.]+ image_8concepts_ms=[\d.]+$",
    "click": r"^click_ms=[\d.]+ click_ratio=[\d.]+$",
    "tracking": r"video_fps_1=[\d.]+ .*video31_fps_2=[\d.]+ video_mem_growth_mb_per_100_frames=",
    "video": r"^video_fps_ratio=[\d.]+ .* concept_fps_ratio=[\d.]+$",
    "tiles": r"^tiles_mpix_per_s=[\d.]+ tiles_peak_rss_mb=\d+$",
    "jobs": r"^jobs_local_ips=[\d.]+$",
}


def run_script(
    out: Path, steps: str | None = None, python: str = sys.executable
) -> subprocess.CompletedProcess:
    """`gpu.sh --smoke` writing into `out`, with GPU_STEPS=`steps` and PYTHON=`python`."""
    env = {**os.environ, "OUT": str(out), "PYTHON": python, "OMP_NUM_THREADS": "1"}
    if steps is not None:
        env["GPU_STEPS"] = steps
    return subprocess.run(
        ["bash", "benchmarks/gpu.sh", "--smoke"],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


def steps_of(summary: str) -> dict[str, tuple[int, str]]:
    """step name -> (exit status, the line after its status line) in a summary file."""
    lines = summary.splitlines()
    found = {}
    for i, line in enumerate(lines):
        m = re.match(r"step=(\w+) rc=(-?\d+) seconds=\d+$", line)
        if m:
            found[m[1]] = (int(m[2]), lines[i + 1] if i + 1 < len(lines) else "")
    return found


def test_every_step_runs_on_the_cpu_path_and_reports_its_figures(tmp_path):
    proc = run_script(tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = (tmp_path / "gpu_summary.txt").read_text()
    assert re.search(r"^date=\S+ smoke=1$", summary, re.MULTILINE)
    assert re.search(r"^torch=\S+ transformers=5.23.0 gpu=none$", summary, re.MULTILINE)
    steps = steps_of(summary)
    assert list(steps) == ["tests", "image", "click", "video", "tracking", "tiles", "jobs"]
    log = (tmp_path / "gpu_log.txt").read_text()
    for name, (rc, last) in steps.items():
        assert rc == 0, f"step {name} failed:\n{log[-3000:]}"
        assert re.search(KEYS[name], last), (name, last)
    assert "skipped" in steps["tests"][1]  # the GPU-only tests skip themselves on the CPU
    assert "=== jobs: " in log and not list(tmp_path.glob("step.txt"))


def test_chosen_steps_only_and_a_failing_step_is_reported(tmp_path):
    proc = run_script(tmp_path, steps="tiles")
    assert proc.returncode == 0
    steps = steps_of((tmp_path / "gpu_summary.txt").read_text())
    assert list(steps) == ["tiles"] and steps["tiles"][0] == 0
    broken = tmp_path / "broken"
    run_script(broken, steps="click", python="false")  # every Python call fails
    steps = steps_of((broken / "gpu_summary.txt").read_text())
    assert steps["click"][0] != 0  # recorded, and the script goes on to its summary
