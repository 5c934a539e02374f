"""`slowatch convert`: slowatch -> OpenSLO -> slowatch gives an identical model, for the example
spec (the seed's 11 SLOs) and for hand-built SLOs of every kind; one file per service."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from slowatch.cli import main
from slowatch.core.model import (
    SLO,
    AlertExtras,
    AlertPolicy,
    CalendarWindow,
    Component,
    CompositeSLI,
    Exclusion,
    LatencySLI,
    RatioSLI,
    RollingWindow,
    ThroughputSLI,
)
from slowatch.formats import writer
from slowatch.spec import load_specs

DEPLOY = Path(__file__).parents[2] / "deploy" / "slos"
SLOTH = Path(__file__).parents[1] / "data" / "sloth" / "no-alerts.yml"


def strip(slos: list[SLO]) -> list[SLO]:
    return sorted((replace(s, source="") for s in slos), key=lambda s: s.id)


def convert(capsys: pytest.CaptureFixture[str], to: str, out: Path, *paths: Path) -> tuple[int, str, str]:
    code = main(["convert", *map(str, paths), "--to", to, "--out", str(out)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_example_spec_round_trips_through_openslo_to_an_identical_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = load_specs([DEPLOY])
    assert len(original) == 11
    code, out, err = convert(capsys, "openslo", tmp_path / "openslo", DEPLOY)
    assert (code, err) == (0, "")
    services = sorted({s.service for s in original})
    assert sorted(p.stem for p in (tmp_path / "openslo").iterdir()) == services
    assert out.count("wrote ") == len(services)
    assert strip(load_specs([tmp_path / "openslo"])) == strip(original)
    code, _, err = convert(capsys, "slowatch", tmp_path / "back", tmp_path / "openslo")
    assert (code, err) == (0, "")
    assert strip(load_specs([tmp_path / "back"])) == strip(original)


EVERY_KIND = [
    SLO("a", "errors-selector", 99.9, RollingWindow(timedelta(days=28)), RatioSLI(total="t_total", errors="e_total"),
        description="selector ratio, errors", labels=(("team", "x"),),
        alerting=AlertPolicy(budget_consumed=(50.0, 90.0), runbook_url="https://runbooks.example/a")),
    SLO("a", "good-selector", 95.5, CalendarWindow("month", "Europe/Paris"),
        RatioSLI(total='t_total{job="a"}', good='g_total{job="a"}'), labels=(("team", "x"),),
        alerting=AlertPolicy(budget_consumed=(), burn_rate=False, no_data="alert")),
    SLO("a", "raw", 99.0, CalendarWindow("week"),
        RatioSLI(total="sum(increase(t[{{.window}}]))", errors="sum(increase(e[{{.window}}]))", raw=True),
        alerting=AlertPolicy(budget_consumed=(25.0,), burn_rate=False)),
    SLO("b", "latency", 97.0, RollingWindow(timedelta(days=7)),
        LatencySLI("http_request_duration_seconds", '{job="b"}', 0.25), alerting=AlertPolicy(no_data="alert")),
    SLO("b", "throughput", 99.5, RollingWindow(timedelta(hours=36)),
        ThroughputSLI("sum(rate(r_total[1m]))", 12.5, timedelta(minutes=5))),
]


@pytest.mark.parametrize("slo", EVERY_KIND, ids=lambda s: f"a {s.name} SLO round-trips through OpenSLO")
def test_every_kind_round_trips_through_openslo(tmp_path: Path, slo: SLO) -> None:
    documents, notes = writer.to_openslo([slo])
    assert notes == []
    (tmp_path / "o.yaml").write_text(writer.dump(documents[slo.service]))
    assert strip(load_specs([tmp_path / "o.yaml"])) == strip([slo])
    documents, notes = writer.to_slowatch(load_specs([tmp_path / "o.yaml"]))
    (tmp_path / "n.yaml").write_text(writer.dump(documents[slo.service]))
    assert strip(load_specs([tmp_path / "n.yaml"])) == strip([slo])


def test_services_with_several_label_sets_become_one_document_each_in_one_file() -> None:
    documents, _ = writer.to_slowatch(EVERY_KIND)
    assert [(d.get("labels"), [s["name"] for s in d["slos"]]) for d in documents["a"]] == [
        ({"team": "x"}, ["errors-selector", "good-selector"]), (None, ["raw"])]


def test_what_a_format_cannot_hold_is_a_note_never_dropped_silently(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    extras = (("page", AlertExtras(labels=(("routing_key", "team"),))),)
    slo = replace(EVERY_KIND[0], alerting=replace(EVERY_KIND[0].alerting, extras=extras))
    _, notes = writer.to_openslo([slo])
    assert notes == [
        "a/errors-selector: OpenSLO has no field for the alert labels and annotations imported from Sloth "
        "(page: labels {'routing_key': 'team'}, annotations {}); add them in Alertmanager (a route's labels "
        "or templates), or keep loading the Sloth file"
    ]


def test_a_sloth_file_converts_to_openslo_with_its_numbers(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = convert(capsys, "openslo", tmp_path, SLOTH)
    assert code == 0
    docs = list(yaml.safe_load_all((tmp_path / "myapp.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Service", "SLO"]
    assert docs[1]["spec"]["objectives"] == [{"displayName": "http-availability", "target": 0.9999}]
    assert strip(load_specs([tmp_path])) == strip(load_specs([SLOTH]))


def test_notification_targets_round_trip_through_openslo_and_are_a_note_in_slowatch_v1(tmp_path: Path) -> None:
    extras = (("page", AlertExtras(labels=(("notification_target", "pagerduty,sre"),))),
              ("ticket", AlertExtras(labels=(("notification_target", "slack"),))))
    slo = replace(EVERY_KIND[3], alerting=replace(EVERY_KIND[3].alerting, extras=extras))
    documents, notes = writer.to_openslo([slo])
    assert notes == []
    (tmp_path / "o.yaml").write_text(writer.dump(documents[slo.service]))
    assert strip(load_specs([tmp_path / "o.yaml"])) == strip([slo])
    _, notes = writer.to_slowatch([slo])
    assert [n.split(":")[0] for n in notes] == ["b/latency"]


JOURNEYS = [
    pytest.param(CompositeSLI(components=(Component("a/errors-selector", 1.0), Component("b/latency", 2.5))),
                 id="a composite with weights round-trips through OpenSLO objectives with compositeWeight"),
    pytest.param(CompositeSLI(components=(Component("a/errors-selector"), Component("b/latency")), weighting="events"),
                 id="a composite weighting events keeps it in an annotation"),
]


@pytest.mark.parametrize("sli", JOURNEYS)
def test_composites_round_trip_through_openslo_and_slowatch_v1(tmp_path: Path, sli: CompositeSLI) -> None:
    parts = [replace(EVERY_KIND[0], window=RollingWindow(timedelta(days=7))), EVERY_KIND[3]]
    slos = [*parts, SLO("journeys", "checkout", 99.5, RollingWindow(timedelta(days=7)), sli)]
    for to in (writer.to_openslo, writer.to_slowatch):
        documents, notes = to(slos)
        assert notes == []
        out = tmp_path / to.__name__
        out.mkdir()
        for service, docs in documents.items():
            (out / f"{service}.yaml").write_text(writer.dump(docs))
        assert strip(load_specs([out])) == strip(slos)
    objectives = writer.to_openslo(slos)[0]["journeys"][1]["spec"]["objectives"]
    assert [(o["displayName"], o["target"], o["compositeWeight"]) for o in objectives] == [
        (c.slo, {"a/errors-selector": 0.999, "b/latency": 0.97}[c.slo], c.weight) for c in sli.components]
    assert all("indicator" in o for o in objectives)  # each self-contained for other OpenSLO tools


MAINTENANCE = (Exclusion(reason="planned migration", start=datetime(2026, 11, 20, 2, tzinfo=UTC),
                         end=datetime(2026, 11, 20, 4, tzinfo=UTC)),
               Exclusion(reason="weekly maintenance", rrule="FREQ=WEEKLY;BYDAY=SU;BYHOUR=2;BYMINUTE=0",
                         duration=timedelta(hours=2), timezone="Europe/Paris"))


def test_exclusions_are_a_note_in_openslo_and_kept_in_slowatch_v1(tmp_path: Path) -> None:
    slo = replace(EVERY_KIND[3], exclusions=MAINTENANCE)
    _, notes = writer.to_openslo([slo])
    assert notes == ["b/latency: OpenSLO has no field for exclusions: 2 dropped (planned migration; weekly "
                     "maintenance); the OpenSLO SLO counts those events against its budget; keep the slowatch/v1 "
                     "file for them"]
    documents, notes = writer.to_slowatch([slo])
    assert notes == []
    (tmp_path / "n.yaml").write_text(writer.dump(documents[slo.service]))
    assert strip(load_specs([tmp_path / "n.yaml"])) == strip([slo])
