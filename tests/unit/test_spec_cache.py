"""The parsed-spec cache (``load_specs(paths, cache_dir)``): a restart with unchanged files gets
the very SLOs without parsing; anything that differs, or a damaged file, means parsing again,
and a spec with a problem is reported exactly as without the cache."""

from __future__ import annotations

import hashlib
import os
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest

import slowatch.spec
import slowatch.spec_cache
from slowatch.core.model import SLO, CalendarWindow
from slowatch.errors import SpecError
from slowatch.spec import load_specs
from slowatch.spec_cache import CACHE_FILENAME, HEADER, MAGIC, VERSION, SpecCache, cache_key, source_fingerprint

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "deploy" / "slos"


def spec(service: str = "auth", objective: str = "99.9", window: str = "30d") -> str:
    return f"""\
apiVersion: slowatch/v1
service: {service}
slos:
  - name: login
    objective: {objective}
    window: {window}
    sli:
      ratio:
        errors: http_requests_total{{service="{service}",code="500"}}
        total: http_requests_total{{service="{service}"}}
"""


class Parses:
    """Counts the parses of load_specs (our own function, wrapped, not faked)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = slowatch.spec._parse

        def counted(*args: object, **kwargs: object) -> list[SLO]:
            self.count += 1
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(slowatch.spec, "_parse", counted)


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> Parses:
    return Parses(monkeypatch)


def test_a_second_load_of_the_examples_gives_the_same_slos_without_parsing(tmp_path: Path, parses: Parses) -> None:
    first = load_specs([EXAMPLES], tmp_path)
    second = load_specs([EXAMPLES], tmp_path)
    assert (parses.count, len(first)) == (1, 11)
    assert second == first == load_specs([EXAMPLES])
    assert [s.source for s in second] == [s.source for s in first]


def test_without_a_cache_dir_nothing_is_written(tmp_path: Path, parses: Parses) -> None:
    load_specs([EXAMPLES])
    load_specs([EXAMPLES])
    assert parses.count == 2
    assert not (tmp_path / CACHE_FILENAME).exists()


def _edit_bytes(specs: Path) -> list[Path | str]:
    (specs / "auth.yaml").write_text(spec(objective="99.5"))
    return [specs]


def _rename(specs: Path) -> list[Path | str]:
    (specs / "auth.yaml").rename(specs / "login.yaml")
    return [specs]


def _reorder(specs: Path) -> list[Path | str]:
    return [specs / "pay.yaml", specs / "auth.yaml"]


def _name_otherwise(specs: Path) -> list[Path | str]:
    return [f"{specs}/./auth.yaml", specs / "pay.yaml"]


def _add_a_file(specs: Path) -> list[Path | str]:
    (specs / "shop.yaml").write_text(spec(service="shop"))
    return [specs]


@pytest.mark.parametrize("change", [
    pytest.param(_edit_bytes, id="a file's bytes changed"),
    pytest.param(_rename, id="a file was renamed"),
    pytest.param(_reorder, id="the files come in another order"),
    pytest.param(_name_otherwise, id="a file is named otherwise (each SLO's source)"),
    pytest.param(_add_a_file, id="a file was added"),
])
def test_a_spec_that_differs_in_any_way_is_parsed_again_and_cached_anew(
    tmp_path: Path, parses: Parses, change: Callable[[Path], list[Path | str]]
) -> None:
    specs, cache = tmp_path / "specs", tmp_path / "state"
    specs.mkdir()
    (specs / "auth.yaml").write_text(spec())
    (specs / "pay.yaml").write_text(spec(service="pay"))
    load_specs([specs], cache)
    paths = change(specs)
    after = load_specs(paths, cache)
    assert parses.count == 2  # not taken from the cache
    assert after == load_specs(paths)
    assert load_specs(paths, cache) == after
    assert parses.count == 3  # the changed spec is the cached one now


def test_another_slowatch_or_library_version_parses_again(
    tmp_path: Path, parses: Parses, monkeypatch: pytest.MonkeyPatch
) -> None:
    load_specs([EXAMPLES], tmp_path)
    monkeypatch.setattr(slowatch.spec_cache, "environment", lambda: b"another build")
    load_specs([EXAMPLES], tmp_path)
    assert parses.count == 2


def _edit_source(package: Path) -> None:
    (package / "spec.py").write_text("VALIDATE = False\n")


def _rename_source(package: Path) -> None:
    (package / "spec.py").rename(package / "spec2.py")


def _add_source(package: Path) -> None:
    (package / "core" / "extra.py").write_text("")


@pytest.mark.parametrize("change", [
    pytest.param(_edit_source, id="an edited module"),
    pytest.param(_rename_source, id="a renamed module"),
    pytest.param(_add_source, id="a new module in a subpackage"),
])
def test_any_change_to_slowatch_s_source_changes_its_fingerprint(
    tmp_path: Path, change: Callable[[Path], None]
) -> None:
    (tmp_path / "core").mkdir()
    (tmp_path / "spec.py").write_text("VALIDATE = True\n")
    (tmp_path / "core" / "model.py").write_text("")
    before = source_fingerprint(tmp_path)
    assert source_fingerprint(tmp_path) == before
    change(tmp_path)
    assert source_fingerprint(tmp_path) != before


def test_an_install_without_sources_is_fingerprinted_by_its_compiled_files(tmp_path: Path) -> None:
    (tmp_path / "spec.cpython-311.pyc").write_bytes(b"one build")
    before = source_fingerprint(tmp_path)
    (tmp_path / "spec.cpython-311.pyc").write_bytes(b"another build")
    assert source_fingerprint(tmp_path) != before


def test_a_spec_with_a_problem_is_reported_as_without_the_cache_and_never_cached(tmp_path: Path) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "auth.yaml").write_text(spec(objective="100"))
    with pytest.raises(SpecError) as plain:
        load_specs([specs])
    for _ in range(2):
        with pytest.raises(SpecError) as cached:
            load_specs([specs], tmp_path / "state")
        assert cached.value.problems == plain.value.problems
    assert not (tmp_path / "state" / CACHE_FILENAME).exists()


def test_a_missing_path_is_reported_as_without_the_cache(tmp_path: Path) -> None:
    load_specs([EXAMPLES], tmp_path)
    with pytest.raises(SpecError) as cached:
        load_specs([EXAMPLES, tmp_path / "missing.yaml"], tmp_path)
    assert [(p.file, p.message) for p in cached.value.problems] == [
        (str(tmp_path / "missing.yaml"), "no such file or directory")]


def _forged(payload: bytes, key: bytes) -> bytes:
    """A cache file with a valid header and checksum around ``payload``."""
    return HEADER.pack(MAGIC, VERSION, key, hashlib.sha256(payload).digest(), len(payload)) + payload


class _Boom:
    def __reduce__(self) -> tuple[Callable[..., object], tuple[str]]:
        return os.system, ("touch boom",)


def _flip_a_payload_byte(data: bytes, key: bytes) -> bytes:
    return data[:-10] + bytes([data[-10] ^ 1]) + data[-9:]


DAMAGE: list[object] = [
    pytest.param(lambda data, key: data[: HEADER.size - 3], id="a truncated header"),
    pytest.param(lambda data, key: data[:-5], id="a truncated payload"),
    pytest.param(_flip_a_payload_byte, id="a flipped payload byte (SHA-256)"),
    pytest.param(lambda data, key: b"X" + data[1:], id="another magic"),
    pytest.param(lambda data, key: data[:16] + (VERSION + 1).to_bytes(4, "little") + data[20:],
                 id="another format version"),
    pytest.param(lambda data, key: _forged(b"not zlib", key), id="a payload that is not zlib"),
    pytest.param(lambda data, key: _forged(zlib.compress(b"\x80\x05not a pickle"), key),
                 id="a payload that is not a pickle"),
    pytest.param(lambda data, key: _forged(zlib.compress(pickle.dumps({"a": 1})), key),
                 id="a pickle of something else than SLOs"),
    pytest.param(lambda data, key: _forged(zlib.compress(pickle.dumps([_Boom()])), key),
                 id="a pickle naming another callable (os.system) is refused, never called"),
]


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_damaged_cache_is_ignored_and_rewritten_never_fatal(
    tmp_path: Path, parses: Parses, monkeypatch: pytest.MonkeyPatch, damage: Callable[[bytes, bytes], bytes]
) -> None:
    monkeypatch.chdir(tmp_path)
    expected = load_specs([EXAMPLES], tmp_path)
    path = tmp_path / CACHE_FILENAME
    key = path.read_bytes()[20:52]
    path.write_bytes(damage(path.read_bytes(), key))
    assert load_specs([EXAMPLES], tmp_path) == expected
    assert parses.count == 2
    assert load_specs([EXAMPLES], tmp_path) == expected  # rewritten: a hit again
    assert parses.count == 2
    assert not (tmp_path / "boom").exists()


def test_an_unwritable_state_dir_still_loads(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    assert load_specs([EXAMPLES], blocked) == load_specs([EXAMPLES])


def test_a_time_zone_gone_from_the_database_means_validating_again(
    tmp_path: Path, parses: Parses, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "auth.yaml").write_text(spec(window="{calendar: month, timezone: Europe/Paris}"))
    [slo] = load_specs([specs], tmp_path)
    assert slo.window == CalendarWindow("month", "Europe/Paris")
    monkeypatch.setattr(slowatch.spec_cache, "_zones_exist", lambda slos: False)
    load_specs([specs], tmp_path)
    assert parses.count == 2


def test_the_key_frames_each_name_and_content() -> None:
    # ("ab", "c") and ("a", "bc") must not collide, nor the order of the files.
    assert cache_key([("a", b"bc")]) != cache_key([("ab", b"c")])
    assert cache_key([("a", b"1"), ("b", b"2")]) != cache_key([("b", b"2"), ("a", b"1")])


def test_get_and_put_round_trip_the_slos_exactly(tmp_path: Path) -> None:
    slos = load_specs([EXAMPLES])
    cache = SpecCache(tmp_path)
    cache.put(b"k" * 32, slos)
    assert cache.get(b"k" * 32) == slos
    assert cache.get(b"j" * 32) is None
