"""A loopback stand-in for the Hugging Face Hub, for tests (no network here).

`HF_ENDPOINT=<HubStandin.url>` points huggingface_hub and datasets at it; they then take
their real download path: `datasets.load_dataset("org/name", "config")` asks for the
dataset card (`resolve/<rev>/README.md`), the repo's revision (`/api/datasets/<repo>/
revision/<rev>`), lists files (`/api/datasets/<repo>/tree/<rev>/<path>`, `paths-info`) and
downloads the parquet files (`resolve/<sha>/<file>`), and `snapshot_download` a model repo
the same way. Only those endpoints are served, with the headers the clients read
(huggingface_hub 2.4 `file_download.get_hf_file_metadata`, `utils._http.hf_raise_for_status`):
`X-Repo-Commit`, `ETag` (the sha256 of an LFS file, the git blob sha1 of any other),
`Content-Length`, range requests, and `X-Error-Code` on a 404 (RepoNotFound,
RevisionNotFound, EntryNotFound), which the clients turn into their typed errors.

Written here rather than taken from a library: huggingface_hub ships no test server, and
the few endpoints are simpler to serve than a general mock to configure. Every byte served
is made by the tests (`dataset_repo` below, from rows standard_task_data.py makes up);
nothing third-party.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

LFS_SUFFIXES = (".parquet", ".safetensors", ".bin", ".arrow")
"""Files the hub keeps in LFS (their ETag is their sha256, as on the hub)."""

DATE = "2026-01-01T00:00:00.000Z"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Repo:
    """One repository at one commit: `files` maps a path in the repo to its bytes."""

    repo_type: str  # "dataset" or "model"
    repo_id: str
    files: dict[str, bytes]
    sha: str = ""

    def __post_init__(self) -> None:
        h = hashlib.sha1(f"{self.repo_type}:{self.repo_id}".encode())
        for path in sorted(self.files):
            h.update(path.encode() + b"\0" + git_blob_sha1(self.files[path]).encode())
        self.sha = self.sha or h.hexdigest()

    def entry(self, path: str) -> dict[str, Any] | None:
        """The tree / paths-info entry of a file or folder, None if the path is neither."""
        if path in self.files:
            data = self.files[path]
            out: dict[str, Any] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data),
                                   "path": path}
            if path.endswith(LFS_SUFFIXES):
                out["lfs"] = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data),
                              "pointerSize": 134}
            return out
        prefix = path.rstrip("/") + "/"
        if path == "" or any(f.startswith(prefix) for f in self.files):
            oid = hashlib.sha1(f"{self.sha}:{path}".encode()).hexdigest()
            return {"type": "directory", "oid": oid, "size": 0, "path": path}
        return None

    def children(self, folder: str, recursive: bool) -> list[dict[str, Any]]:
        prefix = folder.strip("/") + "/" if folder.strip("/") else ""
        found: dict[str, dict[str, Any]] = {}
        for path in sorted(self.files):
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix):].split("/")
            # folders on the way, then the file (or only the first level)
            for depth in range(1, len(parts) + 1 if recursive else 2):
                sub = prefix + "/".join(parts[:depth])
                if sub not in found:
                    found[sub] = self.entry(sub)  # type: ignore[assignment]
        return list(found.values())

    def etag(self, path: str) -> str:
        data = self.files[path]
        if path.endswith(LFS_SUFFIXES):
            return hashlib.sha256(data).hexdigest()
        return git_blob_sha1(data)


@dataclass
class HubStandin:
    """A threaded HTTP server on 127.0.0.1 serving `repos`; `requests` logs what was asked
    ("METHOD path"), so a test can check that a run did (or did not) reach the hub."""

    repos: dict[tuple[str, str], Repo] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add(self, repo: Repo) -> Repo:
        self.repos[(repo.repo_type, repo.repo_id)] = repo
        return repo

    def start(self) -> "HubStandin":
        standin = self

        class Handler(_Handler):
            hub = standin

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


_API = re.compile(r"^/api/(?P<kind>datasets|models)/(?P<repo>[^/]+/[^/]+)"
                  r"(?:/(?P<op>revision|tree|paths-info)/(?P<rev>[^/]+)(?P<rest>/.*)?)?$")
_RESOLVE = re.compile(r"^/(?P<kind>datasets/)?(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


class _Handler(BaseHTTPRequestHandler):
    hub: HubStandin
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes on a kept-alive connection: with Nagle's
    # algorithm the body waits for the ACK of the headers, which the client delays (up to
    # 40 ms on Linux loopback), once per request. The early-signal preset's online run makes
    # 737 requests: 30.7 s with Nagle, 16.6 s without (2 cores).
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:  # quiet: the test output stays readable
        pass

    # ----------------------------------------------------------------- dispatch

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.hub.requests.append(f"{method} {url.path}")
        query = parse_qs(url.query)
        if m := _API.match(url.path):
            repo_type = m["kind"][:-1]
            repo = self._repo(repo_type, m["repo"], m["rev"] or "main")
            if repo is None:
                return
            op = m["op"] or "revision"
            if op == "revision" and method == "GET":
                return self._json(200, self._info(repo))
            if op == "tree" and method == "GET":
                folder = unquote((m["rest"] or "/")[1:])
                if repo.entry(folder) is None:
                    return self._error(404, "EntryNotFound", f"{folder} not found")
                recursive = query.get("recursive", ["false"])[0].lower() == "true"
                return self._json(200, repo.children(folder, recursive))
            if op == "paths-info" and method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                form = parse_qs(self.rfile.read(length).decode())
                entries = [repo.entry(p) for p in form.get("paths", [])]
                return self._json(200, [e for e in entries if e is not None])
        elif m := _RESOLVE.match(url.path):
            repo = self._repo("dataset" if m["kind"] else "model", m["repo"], m["rev"])
            if repo is None:
                return
            return self._file(method, repo, unquote(m["path"]))
        self._error(404, None, f"no such endpoint: {method} {url.path}")

    # ---------------------------------------------------------------- responses

    def _repo(self, repo_type: str, repo_id: str, revision: str) -> Repo | None:
        repo = self.hub.repos.get((repo_type, repo_id))
        if repo is None:
            # the hub answers 401 for a missing (or private) repo; the code says which
            self._error(401, "RepoNotFound", "Repository not found")
            return None
        if unquote(revision) not in ("main", repo.sha):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(revision)}")
            return None
        return repo

    def _info(self, repo: Repo) -> dict[str, Any]:
        return {"_id": repo.sha[:24], "id": repo.repo_id, "author": repo.repo_id.split("/")[0],
                "sha": repo.sha, "lastModified": DATE, "createdAt": DATE, "private": False,
                "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                "siblings": [{"rfilename": p} for p in sorted(repo.files)]}

    def _file(self, method: str, repo: Repo, path: str) -> None:
        if path not in repo.files:
            return self._error(404, "EntryNotFound", f"{path} does not exist on main",
                               commit=repo.sha)
        data = repo.files[path]
        status, start, end = 200, 0, len(data)
        if rng := re.fullmatch(r"bytes=(\d*)-(\d*)", self.headers.get("Range", "")):
            if rng[1]:
                start = int(rng[1])
                end = min(int(rng[2]) + 1, len(data)) if rng[2] else len(data)
            elif rng[2]:  # the last N bytes
                start = max(0, len(data) - int(rng[2]))
            status = 206
        body = data[start:end]
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{repo.etag(path)}"')
        self.send_header("X-Repo-Commit", repo.sha)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(data)}")
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _error(self, status: int, code: str | None, message: str, commit: str | None = None) -> None:
        body = json.dumps({"error": message}).encode()
        self.send_response(status)
        if code:
            self.send_header("X-Error-Code", code)
        self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


# ------------------------------------------------------------------ dataset repositories


def dataset_repo(repo_id: str, configs: dict[str, dict[str, list[dict]]],
                 features: Any = None) -> Repo:
    """A dataset repo laid out as the hub's parquet repos are: `<config>/<split>-00000-of-
    00001.parquet` and a README whose YAML header declares the configs and their files
    (`configs: [{config_name, data_files: [{split, path}]}]`); one config named `default`
    lives under `data/`. `features` (datasets.Features) types the columns, e.g. ClassLabel."""
    import datasets
    import pyarrow.parquet as pq

    files: dict[str, bytes] = {}
    card = ["---", "configs:"]
    for config, splits in configs.items():
        folder = "data" if config == "default" else config
        card += [f"- config_name: {config}", "  data_files:"]
        for split, rows in splits.items():
            buf = io.BytesIO()
            # the table carries the features (ClassLabel names...) in its schema metadata,
            # as the hub's parquet files do
            pq.write_table(datasets.Dataset.from_list(rows, features=features).data.table, buf)
            path = f"{folder}/{split}-00000-of-00001.parquet"
            files[path] = buf.getvalue()
            card += [f"  - split: {split}", f"    path: {folder}/{split}-*"]
    card += ["---", "", f"# {repo_id} (synthetic stand-in made by repro's tests)", ""]
    files["README.md"] = "\n".join(card).encode()
    return Repo("dataset", repo_id, files)
