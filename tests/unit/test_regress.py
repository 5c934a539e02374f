"""`slowatch regress` on result files: the seed's severities at every band edge, in both directions,
k6's summary format, and the exit codes a CI pipeline relies on."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from slowatch.cli import main
from slowatch.core import regress
from slowatch.regress import read_results

D = Decimal


@pytest.mark.parametrize(("name", "baseline", "current", "is_regression", "severity"), [
    # Latency: worse when higher. The threshold is strict (the seed's `>`): exactly 10% is no regression.
    pytest.param("api_latency", "100", "110", False, "none", id="latency up exactly 10% is not past the threshold"),
    pytest.param("api_latency", "100", "110.01", True, "medium", id="latency up just past 10% is medium"),
    pytest.param("api_latency", "100", "124.99", True, "medium", id="latency up just under 25% is medium"),
    pytest.param("api_latency", "100", "125", True, "high", id="latency up exactly 25% is high"),
    pytest.param("api_latency", "100", "149.99", True, "high", id="latency up just under 50% is high"),
    pytest.param("api_latency", "100", "150", True, "critical", id="latency up exactly 50% is critical"),
    pytest.param("api_latency", "0.2", "0.3", True, "critical",
                 id="0.2 to 0.3 is exactly 50% (decimal, not 49.999...% as floats give)"),
    pytest.param("job_duration", "100", "50", False, "none", id="a duration that halves is an improvement"),
    # Throughput: worse when lower.
    pytest.param("checkout_throughput", "100", "90", False, "none", id="throughput down exactly 10% is not past it"),
    pytest.param("checkout_throughput", "100", "89.99", True, "medium", id="throughput down past 10% is medium"),
    pytest.param("checkout_throughput", "100", "75", True, "high", id="throughput down exactly 25% is high"),
    pytest.param("api_rps", "100", "50", True, "critical", id="requests per second down exactly 50% is critical"),
    pytest.param("api_rps", "100", "200", False, "none", id="throughput that doubles is an improvement"),
    # Other names have no direction, as in the seed.
    pytest.param("errors_total", "1", "100", False, "none", id="a name with no known suffix is never a regression"),
])
def test_the_seeds_bands(name: str, baseline: str, current: str, is_regression: bool, severity: str) -> None:
    row = regress.compare_one(name, D(baseline), D(current), direction=regress.direction_of(name))
    assert (row.is_regression, row.severity) == (is_regression, severity)
    assert row.change_percentage == pytest.approx(float((D(current) - D(baseline)) / D(baseline) * 100), rel=1e-12)


@pytest.mark.parametrize(("change", "severity"), [
    pytest.param("9.99", "low", id="under 10% is low"),
    pytest.param("10", "medium", id="10% is medium"),
    pytest.param("-25", "high", id="25% down is high"),
    pytest.param("50", "critical", id="50% is critical"),
])
def test_severity_bands_by_size(change: str, severity: str) -> None:
    assert regress.severity_of(D(change)) == severity


def test_a_lower_threshold_makes_smaller_changes_regressions() -> None:
    row = regress.compare_one("api_latency", D(100), D(106), threshold=D(5),
                              direction=regress.Direction.HIGHER_IS_WORSE)
    assert (row.is_regression, row.severity) == (True, "low")


def write(tmp_path: Path, name: str, doc: Any) -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_critical_regression_exits_1_and_json_has_the_seeds_fields(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    same = {"x_throughput": {"value": 10}}
    base = write(tmp_path, "b.json", {"metrics": {"api_latency": {"p95": 0.2, "avg": 0.1}, **same}})
    cur = write(tmp_path, "c.json", {"metrics": {"api_latency": {"p95": 0.3, "avg": 0.1}, **same}})
    code, out, _ = run(["regress", str(base), str(cur), "--format", "json"], capsys)
    assert code == 1
    doc = json.loads(out)
    assert doc["critical"] is True
    first = doc["regressions"][0]
    assert {k: first[k] for k in ("metric_name", "baseline_value", "current_value", "is_regression", "severity")} == {
        "metric_name": "api_latency", "baseline_value": 0.2, "current_value": 0.3, "is_regression": True,
        "severity": "critical"}
    assert first["change_percentage"] == pytest.approx(50.0, rel=1e-12)


def test_a_high_regression_alone_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "b.json", {"metrics": {"api_latency": {"p95": 100}}})
    cur = write(tmp_path, "c.json", {"metrics": {"api_latency": {"p95": 130}}})
    code, out, _ = run(["regress", str(base), str(cur)], capsys)
    assert code == 0
    assert "high" in out and "no critical regression" in out


def test_k6_summary_export_uses_p95(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The shape of k6's --summary-export: trends carry avg, med, p(90), p(95); counters count and rate.
    k6 = {"metrics": {"http_req_duration": {"avg": 80, "med": 70, "p(90)": 120, "p(95)": 150, "max": 900},
                      "http_reqs": {"count": 6000, "rate": 100}}}
    k6_now = {"metrics": {"http_req_duration": {"avg": 80, "med": 70, "p(90)": 120, "p(95)": 240, "max": 900},
                          "http_reqs": {"count": 6000, "rate": 100}}}
    code, out, _ = run(["regress", str(write(tmp_path, "b.json", k6)), str(write(tmp_path, "c.json", k6_now)),
                        "--format", "json"], capsys)
    rows = {r["metric_name"]: r for r in json.loads(out)["regressions"]}
    assert code == 1  # http_req_duration p(95) +60%
    assert rows["http_req_duration"]["baseline_value"] == 150 and rows["http_req_duration"]["severity"] == "critical"
    assert rows["http_reqs"]["baseline_value"] == 100 and rows["http_reqs"]["is_regression"] is False


def test_k6_handle_summary_values_are_read_too(tmp_path: Path) -> None:
    path = write(tmp_path, "s.json", {"metrics": {"http_req_duration": {"type": "trend", "values": {"p(95)": 12.5}}}})
    assert read_results(path) == {"http_req_duration": D("12.5")}


def test_a_metric_on_one_side_is_reported_not_dropped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "b.json", {"metrics": {"old_latency": {"p95": 1}, "both_latency": {"p95": 1},
                                                  "odd_latency": {"p95": 1}}})
    cur = write(tmp_path, "c.json", {"metrics": {"both_latency": {"p95": 1}, "new_latency": {"p95": 1},
                                                 "odd_latency": {"max": 3}}})
    code, out, _ = run(["regress", str(base), str(cur), "--format", "json"], capsys)
    rows = {r["metric_name"]: r for r in json.loads(out)["regressions"]}
    assert code == 0
    assert rows["old_latency"]["severity"] == "missing" and "current" in rows["old_latency"]["note"]
    assert rows["new_latency"]["severity"] == "missing" and "baseline" in rows["new_latency"]["note"]
    assert rows["odd_latency"]["severity"] == "missing" and "no usable value" in rows["odd_latency"]["note"]


def test_direction_flags_override_the_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = write(tmp_path, "b.json", {"metrics": {"queue_depth": {"value": 10}}})
    cur = write(tmp_path, "c.json", {"metrics": {"queue_depth": {"value": 20}}})
    assert run(["regress", str(base), str(cur)], capsys)[0] == 0
    assert run(["regress", str(base), str(cur), "--higher-is-worse", "queue_depth"], capsys)[0] == 1


@pytest.mark.parametrize(("baseline", "expected"), [
    pytest.param({"metrics": {"a_latency": {"p95": 0}}}, "not positive", id="a zero baseline"),
    pytest.param({"metrics": {"a_latency": {"p95": -1}}}, "not positive", id="a negative baseline"),
    pytest.param("{not json", "not JSON", id="a malformed file"),
    pytest.param({"results": []}, "expected", id="a file with no metrics object"),
    pytest.param({"metrics": {"a_latency": {"p95": "fast"}}}, "is not a number", id="a value that is no number"),
    pytest.param(None, "cannot read", id="a missing file"),
])
def test_unusable_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               baseline: Any, expected: str) -> None:
    base = tmp_path / "missing.json" if baseline is None else write(tmp_path, "b.json", baseline)
    cur = write(tmp_path, "c.json", {"metrics": {"a_latency": {"p95": 1}}})
    code, _, err = run(["regress", str(base), str(cur)], capsys)
    assert code == 2
    assert expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
