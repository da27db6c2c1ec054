"""repro.data.datatrove_deps: datatrove's dependency check answers as datatrove's own walk
does, for every installed distribution and for a missing one, and curation uses it."""

from __future__ import annotations

from importlib import metadata

from datatrove.pipeline.base import PipelineStep
from datatrove.utils import _import_utils

import repro.data.executors  # noqa: F401  (what a curation imports)
from repro.data import datatrove_deps
from repro.data.executors import FORKSERVER_PRELOAD
from repro.environment import distribution_names


def test_the_answer_is_datatrove_s_for_every_installed_and_a_missing_distribution():
    """The names read from headers are exactly those datatrove's walk compares against (its
    full email parse of every distribution on sys.path, lower-cased), so the answers agree
    for every name; spot checks through both functions, a missing name included."""
    import setuptools  # noqa: F401  (puts its vendored distributions on sys.path, as in a test run)

    original = datatrove_deps._DATATROVE_CHECK.__wrapped__  # datatrove's walk, uncached
    parsed = {(d.metadata.get("Name") or "").lower() for d in metadata.distributions()} - {""}
    # names read once, earlier (the cache): a distribution added to sys.path since is not
    # among them, and gets datatrove's own walk, so the answer still agrees
    later = sorted(parsed - distribution_names())
    for name in later + ["trafilatura", "fasteners", "orjson", "fasttext-numpy2-wheel",
                         "no-such-dist-x"]:
        assert datatrove_deps.is_distribution_available(name) == original(name), name
    assert datatrove_deps.is_distribution_available("no-such-dist-x") is None
    distribution_names.cache_clear()  # read now, from the same sys.path as the parse
    assert len(parsed) > 50 and distribution_names() == parsed


def test_curation_processes_ask_ours():
    """Steps check their dependencies through datatrove's module global, which the import
    replaced; the local executor's forkserver imports the module before forking workers."""
    assert _import_utils._is_distribution_available is datatrove_deps.is_distribution_available
    assert "repro.data.datatrove_deps" in FORKSERVER_PRELOAD

    class NeedsOrjson(PipelineStep):
        _requires_dependencies = ["orjson"]

        def run(self, data, rank=0, world_size=1):
            yield from data

    ours = datatrove_deps.is_distribution_available
    ours.cache_clear()
    NeedsOrjson()
    NeedsOrjson()
    info = ours.cache_info()
    assert (info.misses, info.hits) == (1, 1)  # asked once per step, answered once
