"""datatrove's check that a step's dependencies are installed, answered from the installed
distributions' METADATA headers.

Every datatrove step checks its dependencies when it is created, and again when a pool
worker unpickles it (`PipelineStep.__new__`): for each distinct distribution name,
`datatrove.utils._import_utils._is_distribution_available` walks every distribution on
sys.path and parses its whole METADATA file with the email package (0.13 s per name on a
quiet 2-core machine; a web curation asks for 7 names: trafilatura, fasteners, orjson ...),
in the stage process and in every worker of every pass. Importing this module answers from
the headers instead (read as repro.environment reads them for the env records); a name not
found there still gets datatrove's own walk, so the answer is datatrove's in every case.
repro.data.executors imports it, and names it in the local forkserver's preload so that
pool workers, forked from the forkserver, get it too.
"""

from __future__ import annotations

from functools import lru_cache

from datatrove.utils import _import_utils

from repro.environment import distribution_names

_DATATROVE_CHECK = getattr(_import_utils, "_is_distribution_available", None)
"""datatrove's own (lru-cached) check; None if a datatrove release drops it, and then there
is nothing to speed up."""


@lru_cache
def is_distribution_available(distribution_name: str) -> bool | None:
    """datatrove's answer for `distribution_name` (True, or None when it is not installed):
    True at once when an installed distribution's `Name` is it, lower-cased (datatrove's own
    comparison), else whatever datatrove's walk says."""
    if distribution_name in distribution_names():
        return True
    return _DATATROVE_CHECK(distribution_name) if _DATATROVE_CHECK is not None else None


if _DATATROVE_CHECK is not None:
    _import_utils._is_distribution_available = is_distribution_available
