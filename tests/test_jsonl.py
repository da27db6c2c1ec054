"""repro.jsonl: rows as written, line-precise errors, JSONL line splitting."""

from __future__ import annotations

import json

import pytest

from repro.errors import ReproError
from repro.jsonl import JsonlError, folder_files, iter_folder_rows, iter_lines, iter_rows


def test_rows_keep_order_types_and_missing_keys(tmp_path) -> None:
    rows = [{"id": "b", "score": float("nan"), "n": 1}, {"id": "a", "m": {"x": [1, 2.5]}}, [1], 3]
    p = tmp_path / "r.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n  \n", encoding="utf-8")
    got = list(iter_rows(p))
    assert json.dumps(got) == json.dumps(rows)  # NaN kept, no key added to a row that lacks it
    assert "m" not in got[0] and "score" not in got[1]


def test_lines_split_on_newline_only_and_keep_their_text(tmp_path) -> None:
    """U+2028 and U+0085 are line breaks to str.splitlines(), not to JSONL."""
    rows = [{"text": "a\u2028b\x85c\x0cd"}, {"text": "é"}]
    p = tmp_path / "t.jsonl"
    body = "\n".join(json.dumps(r, ensure_ascii=False) for r in rows)  # no final newline
    p.write_text(body, encoding="utf-8")
    lines = list(iter_lines(p))
    assert [line.value for line in lines] == rows
    assert "".join(line.text for line in lines) == body + "\n"
    assert [line.number for line in lines] == [1, 2]


@pytest.mark.parametrize("content, problem", [
    (b'{"id": 1}\n\n{"id": \n', "not JSON"),
    (b'{"id": 1}\n\n{"id": "\xff"}\n', "not UTF-8"),
])
def test_a_bad_line_names_the_file_and_line(tmp_path, content, problem) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_bytes(content)
    with pytest.raises(JsonlError, match=rf"bad\.jsonl:3: {problem}") as e:
        list(iter_rows(p))
    assert (e.value.path, e.value.file, e.value.line) == (p, str(p), 3)
    assert e.value.message.startswith(problem)
    assert isinstance(e.value, ValueError) and isinstance(e.value, ReproError)


def test_a_line_error_for_rows_that_do_not_fit(tmp_path) -> None:
    p = tmp_path / "x.jsonl"
    p.write_text('{"a": 1}\n', encoding="utf-8")
    [line] = iter_lines(p)
    assert str(line.error("no id")) == f"{p}:1: no id"


def test_folder_rows_are_in_sorted_file_order(tmp_path) -> None:
    (tmp_path / "b.jsonl").write_text('{"i": 2}\n', encoding="utf-8")
    (tmp_path / "a.jsonl").write_text('{"i": 0}\n{"i": 1}\n', encoding="utf-8")
    (tmp_path / "c.json").write_text('{"i": 9}\n', encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jsonl").write_text('{"i": 9}\n', encoding="utf-8")
    assert [r["i"] for r in iter_folder_rows(tmp_path)] == [0, 1, 2]
    assert folder_files(tmp_path / "absent") == []
    assert list(iter_folder_rows(tmp_path / "absent")) == []
