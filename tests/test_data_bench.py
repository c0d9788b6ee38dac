"""scripts/bench_data.py end to end at a tiny size: loader rates, a real training step, the ratio."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "bench_data.py"


@pytest.mark.slow
def test_bench_reports_rates_and_headroom(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("bench_data_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "bench.json"
    bench.main(
        ["--batch", "2", "--batches", "3", "--workers", "0,1", "--steps", "1", "--device", "cpu",
         "--json", str(out)]
    )  # fmt: skip
    result = json.loads(out.read_text())
    assert result["model_samples_per_s"] > 0
    assert set(result["loader_samples_per_s"]) == {"0", "1"}
    for w in ("0", "1"):
        ratio = result["loader_samples_per_s"][w] / result["model_samples_per_s"]
        assert result["headroom"][w] == pytest.approx(ratio)
    assert "EDSR-baseline-LTE train" in capsys.readouterr().out
