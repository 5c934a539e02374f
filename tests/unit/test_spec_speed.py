"""The fast spec reader (libyaml where it reads a text as PyYAML does) gives the very SLOs and
the very problems of the pure-Python reader, on the shipped specs, the test corpora, the bench's
spec and the texts where the two YAML parsers disagree."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

import slowatch.spec
from bench.data import write_specs
from slowatch.core.model import SLO
from slowatch.errors import SpecError, SpecProblem
from slowatch.spec import load_specs

REPO = Path(__file__).resolve().parents[2]
CORPUS = sorted(
    [REPO / "deploy" / "slos", REPO / "tests" / "data" / "openslo" / "ref"]
    + [p for d in ("openslo", "sloth") for p in (REPO / "tests" / "data" / d).glob("*.y*ml")]
)

pytestmark = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML without libyaml has one reader")


def outcome(paths: list[Path]) -> list[SLO] | list[SpecProblem]:
    try:
        return load_specs(paths)
    except SpecError as exc:
        return exc.problems


def test_the_corpus_has_valid_and_invalid_specs() -> None:
    # The comparison below means something only if both kinds are in it.
    kinds = {type(outcome([p])) is list and all(isinstance(x, SLO) for x in outcome([p])) for p in CORPUS}
    assert kinds == {True, False}


@pytest.mark.parametrize("path", [pytest.param(p, id=str(p.relative_to(REPO))) for p in CORPUS])
def test_every_corpus_spec_loads_to_what_the_pure_python_reader_gives(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = outcome([path])
    monkeypatch.setattr(slowatch.spec, "_FastLoader", slowatch.spec._Loader)
    assert fast == outcome([path])


def test_the_bench_spec_loads_to_what_the_pure_python_reader_gives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = write_specs(tmp_path / "specs", 400, "30d")
    fast = load_specs([directory])
    monkeypatch.setattr(slowatch.spec, "_FastLoader", slowatch.spec._Loader)
    assert len(fast) == 400
    assert fast == load_specs([directory])


SPEC = """\
apiVersion: slowatch/v1
service: auth
slos:
  - name: login
    objective: 99.9
    window: 30d
    sli:
      ratio:
        errors: http_requests_total{code="500"}
        total: http_requests_total
"""
# Each text is one the two parsers read differently (found by a differential fuzz of the
# corpus): what load_specs reports is PyYAML's reading, word for word.
DISAGREEMENTS = [
    pytest.param(
        SPEC.replace("    objective: 99.9", "    objective:\t99.9"),
        "invalid YAML at line 5, column 15: found character '\\t' that cannot start any token (while scanning "
        "for the next token); check the indentation, and quote values containing ': ' or starting with {, [, * "
        "or &",
        id="a tab after a colon is refused (libyaml takes it as a space)",
    ),
    pytest.param(
        SPEC.replace("service: auth", "serv\tice: auth"),
        "invalid YAML at line 2, column 5: found character '\\t' that cannot start any token (while scanning "
        "for the next token); check the indentation, and quote values containing ': ' or starting with {, [, * "
        "or &",
        id="a tab inside a key is refused (libyaml keeps it in the key)",
    ),
    pytest.param(
        SPEC.replace("service: auth", "service: {name: au?th}"),
        "invalid YAML at line 2, column 19: expected ',' or '}', but got '?' (while parsing a flow mapping); "
        "check the indentation, and quote values containing ': ' or starting with {, [, * or &",
        id="a question mark inside a flow scalar is refused (libyaml keeps it in the scalar)",
    ),
    pytest.param(
        SPEC.replace("    objective: 99.9", "    description: >#note\n      text\n    objective: 99.9"),
        "invalid YAML at line 5, column 19: expected chomping or indentation indicators, but found '#' (while "
        "scanning a block scalar); check the indentation, and quote values containing ': ' or starting with {, "
        "[, * or &",
        id="a comment right after a block scalar's indicator is refused (libyaml reads it as a comment)",
    ),
    pytest.param(
        SPEC.replace("slos:", "\ufeffslos:"),
        [("slos", "`slos` is required: add e.g. `slos: [{name: ..., objective: ..., window: ..., sli: ...}]`"),
         ("\ufeffslos", "unknown key `\ufeffslos`: did you mean `slos`? (valid keys: apiVersion, service, labels, "
                        "exclusions, slos)")],
        id="a byte order mark inside the file is part of a key (libyaml drops it)",
    ),
    pytest.param(
        SPEC.replace("service: auth", "service: [auth"),
        "invalid YAML at line 3, column 5: expected ',' or ']', but got ':' (while parsing a flow sequence); "
        "check the indentation, and quote values containing ': ' or starting with {, [, * or &",
        id="an unclosed flow sequence is worded as PyYAML words it",
    ),
    pytest.param(
        SPEC.replace("service: auth", "service: auth: login"),
        "invalid YAML at line 2, column 14: mapping values are not allowed here; check the indentation, and "
        "quote values containing ': ' or starting with {, [, * or &",
        id="a colon inside a plain value is worded as PyYAML words it",
    ),
    pytest.param(
        SPEC.replace("service: auth", "service: *auth"),
        "invalid YAML at line 2, column 10: found undefined alias 'auth'; check the indentation, and quote "
        "values containing ': ' or starting with {, [, * or &",
        id="an undefined alias is named (libyaml does not name it)",
    ),
]


@pytest.mark.parametrize(("text", "expected"), DISAGREEMENTS)
def test_where_libyaml_disagrees_the_spec_reads_as_pure_python_pyyaml_reads_it(
    tmp_path: Path, text: str, expected: str | list[tuple[str, str]]
) -> None:
    path = tmp_path / "auth.yaml"
    path.write_text(text, encoding="utf-8")
    problems = [("", expected)] if isinstance(expected, str) else expected
    assert outcome([path]) == [SpecProblem(str(path), at, message) for at, message in problems]


# A differential fuzz, fixed by its seed: the corpus' texts with a few insertions (of YAML's
# indicators, tabs, BOMs, Unicode line breaks and letters), deletions and copies. 60,000 texts
# ran clean while the reader was written; this keeps a few hundred in every run.
FUZZ_SEED, FUZZ_TEXTS = 20261129, 400
INSERTS = [*":-{}[],'\"#&*!|>%@`\\ \n\t?", "é", "中", "\xa0", "\u2028", "\ufeff", "\x85", "<<", "---", "- ",
           ": ", "\n  ", "|-", ">+", "|#", ">#", "&a", "*a", "!!str", "? ", "%YAML 1.1\n"]


def _reading(text: str) -> tuple[str, object]:
    try:
        return "documents", slowatch.spec._documents(text)
    except yaml.YAMLError as exc:
        return "problem", slowatch.spec._yaml_problem(exc)


def _reference_reading(text: str) -> tuple[str, object]:
    try:
        return "documents", [d for d in yaml.load_all(text, Loader=slowatch.spec._Loader) if d is not None]
    except yaml.YAMLError as exc:
        return "problem", slowatch.spec._yaml_problem(exc)


def test_mutated_corpus_texts_read_as_the_pure_python_reader_reads_them() -> None:
    seeds = [p.read_text(encoding="utf-8") for path in CORPUS for p in sorted([path] if path.is_file()
                                                                                 else path.glob("*.y*ml"))]
    rng = random.Random(FUZZ_SEED)
    kinds = set()
    for _ in range(FUZZ_TEXTS):
        text = rng.choice(seeds)
        for _ in range(rng.randint(1, 5)):
            at, roll = rng.randrange(len(text) + 1), rng.random()
            if roll < 0.5:
                text = text[:at] + rng.choice(INSERTS) + text[at:]
            elif roll < 0.8:
                text = text[:at] + text[at + rng.randint(1, 3):]
            else:
                start = rng.randrange(len(text) + 1)
                text = text[:at] + text[start:start + 10] + text[at:]
        reading = _reading(text)
        assert reading == _reference_reading(text), text
        kinds.add(reading[0])
    assert kinds == {"documents", "problem"}  # both outcomes were compared


def test_a_directory_s_symlinks_are_followed_an_alias_loads_once_and_a_broken_one_is_no_file(
    tmp_path: Path,
) -> None:
    (tmp_path / "b.yaml").write_text(SPEC)
    (tmp_path / "a.yaml").symlink_to("b.yaml")  # sorted first: it is the one loaded
    (tmp_path / "dangling.yaml").symlink_to("nowhere.yaml")
    (tmp_path / "loop.yaml").symlink_to("loop.yaml")
    (tmp_path / "sub.yaml").mkdir()
    assert list(slowatch.spec.spec_files([tmp_path, tmp_path / "b.yaml"])) == [
        (tmp_path / "a.yaml", str(tmp_path / "a.yaml"))]
