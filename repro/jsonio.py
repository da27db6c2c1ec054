"""JSON as outputs hold it: canonical text (sorted keys, two-space indent, UTF-8, trailing
newline), so equal content means equal bytes and DVC's hashes compare settings, not key
order; written atomically (repro.atomic)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from repro.atomic import atomic_write_text


def dumps_json(obj: Any) -> str:
    """Canonical JSON for outputs: sorted keys, stable floats, trailing newline."""
    return json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, dumps_json(obj))


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))
