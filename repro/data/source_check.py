"""Check that a dataset's source can be read before any curation work starts.

The readers skip single bad files and records (and count them), so a source that is wrong
as a whole (a typo in the path, a bucket without access, a glob matching nothing) would
otherwise end as an empty dataset with a funnel full of zeros. `check_source` turns those
cases into one `SourceError` that names the path or URL and says what to fix. It lists
files through datatrove's `DataFolder` (fsspec), exactly as the readers do, and opens the
first one, so missing credentials show up here and not as every file being skipped.

Hugging Face hub datasets are not checked here: listing a hub repo needs the network, and
`datasets` knows best how to find one; the reader (`HubDatasetReader`) turns its failure
into the same kind of error (`hub_error`).

Given a `workspace`, a local source must also really lie inside it, symlinks followed: spec
validation checks that too (repro.spec.safety), but a stage reads its source from
params.yaml, which `dvc exp run -S` can change, and a link can change after validation.
"""

from __future__ import annotations

import os
from pathlib import Path

from repro.errors import ReproError
from repro.spec import schema as S
from repro.spec.safety import LOCAL_FIX, redact_url

BUILTIN_GLOBS = {"pydoc_web": "*.warc", "pydoc_pdf": "*.warc", "stdlib_code": "*.jsonl"}
"""Files the source stage writes for each builtin corpus (read non-recursively)."""

class SourceError(ReproError, ValueError):
    """A source that cannot be read at all; the message names it and the fix."""


def redact(url: str) -> str:
    """`url` with any `user:password@` part and secret query values (`?token=`...) hidden,
    for messages and logs (repro.spec.safety.redact_url)."""
    return redact_url(url)


def _is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def _access_hint(path: str) -> str:
    if path.startswith("s3://"):
        return ("check the bucket name and your S3 credentials (AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY or AWS_PROFILE; AWS_ENDPOINT_URL for an S3-compatible "
                "store)")
    if path.startswith("hf://"):
        return "check the repo id and HF_TOKEN for a private or gated repo"
    if _is_remote(path):
        return "check the URL and the credentials its filesystem needs"
    return "check the path and its permissions"


def check_source(source: S.Source, raw: Path | None = None,
                 workspace: Path | None = None) -> None:
    """Raise `SourceError` when `source` cannot be read: its path does not exist, cannot be
    listed or opened, or its glob matches no file; or, given a `workspace`, when a local
    path's real location (symlinks followed) is outside it. `raw` is the source stage's
    output folder, where builtin corpora live. Hub datasets pass (checked by their reader)."""
    if isinstance(source, S.HFDatasetSource):
        return
    if isinstance(source, S.BuiltinSource):
        if raw is None:
            raise SourceError(
                f"builtin source {source.name!r} is read from the source stage's output "
                "(`raw`), which was not given; run the source stage first")
        _check_folder(str(raw), BUILTIN_GLOBS[source.name], recursive=False,
                      what=f"builtin source {source.name!r} output folder")
        return
    what = f"{source.kind} source path"
    _check_folder(source.path, source.glob, recursive=True, what=what)
    if workspace is not None and not _is_remote(source.path):
        _check_inside(source.path, Path(workspace), what)


def _check_inside(path: str, workspace: Path, what: str) -> None:
    local = Path(path.removeprefix("file://"))
    real = (workspace / local).resolve()
    root = workspace.resolve()
    if not real.is_relative_to(root):
        raise SourceError(f"{what} {path!r} resolves to {str(real)!r}, outside the workspace "
                          f"{str(root)!r}; {LOCAL_FIX}")


def _check_folder(path: str, glob: str, recursive: bool, what: str) -> None:
    from datatrove.io import get_datafolder

    shown = redact(path)
    if not _is_remote(path):
        local = Path(path.removeprefix("file://"))
        if not local.exists():
            raise SourceError(f"{what} {shown!r} does not exist; fix `path` in the spec "
                              "(relative paths are taken from the working directory "
                              f"{os.getcwd()!r})")
        if local.is_file():
            raise SourceError(f"{what} {shown!r} is a file, not a folder; set `path` to its "
                              f"folder and `glob` to {local.name!r}")
        if not os.access(local, os.R_OK | os.X_OK):
            raise SourceError(f"{what} {shown!r} cannot be read (permission denied); "
                              "check its permissions")
    try:
        folder = get_datafolder(path)
        files = folder.list_files(glob_pattern=glob, recursive=recursive)
    except ImportError as e:
        raise SourceError(f"{what} {shown!r} needs a filesystem package that is not "
                          f"installed ({e}); install it (e.g. s3fs for s3://)") from e
    except FileNotFoundError as e:
        raise SourceError(f"{what} {shown!r} does not exist; {_access_hint(path)}") from e
    except Exception as e:  # noqa: BLE001 - each filesystem has its own errors
        raise SourceError(f"{what} {shown!r} cannot be listed ({type(e).__name__}: "
                          f"{redact(str(e))}); {_access_hint(path)}") from e
    if not files:
        exists = _exists(folder)
        if exists is False:
            raise SourceError(f"{what} {shown!r} does not exist or is empty; "
                              f"{_access_hint(path)}")
        raise SourceError(f"{what} {shown!r}: glob {glob!r} matches no file; fix `glob` "
                          "(it is relative to `path`; use '**/' to match in subfolders)")
    try:
        with folder.open(files[0], "rb") as f:
            f.read(1)
    except Exception as e:  # noqa: BLE001
        raise SourceError(f"{what} {shown!r}: cannot open {files[0]!r} ({type(e).__name__}: "
                          f"{redact(str(e))}); {_access_hint(path)}") from e


def _exists(folder) -> bool | None:
    try:
        return bool(folder.fs.exists(folder.path))
    except Exception:  # noqa: BLE001
        return None


def hub_error(repo: str, exc: BaseException) -> SourceError:
    """The error for a hub dataset that could not be loaded (typically: offline)."""
    repo = redact(repo)
    return SourceError(
        f"Hugging Face dataset {repo!r} could not be loaded ({type(exc).__name__}: "
        f"{redact(str(exc))}). Without access to the hub, download its files elsewhere "
        f"(`hf download {repo} --repo-type dataset --local-dir DIR`) and set `repo: DIR` "
        "(a local folder of jsonl/parquet files is loaded offline), or point a `jsonl` / "
        "`parquet` source at them; with the network, check the repo id, `subset`, `split` "
        "and HF_TOKEN, and unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE")
