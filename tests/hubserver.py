"""A Hub-protocol test double: the subset of the Hugging Face Hub HTTP API that huggingface_hub uses
to create a repository, upload a commit (regular and git-LFS files), validate a model card's YAML and
download files, served on 127.0.0.1 with the standard library (plus PyYAML, a huggingface_hub
dependency, to read model-card metadata as the Hub does).

It stands in for the Hub's HTTP API, not for porthub: tests drive it only through huggingface_hub.
No upload-capable Hub server is available as a package: olah mirrors downloads only, and the Hub's own
server is not published.

    python tests/hubserver.py --root DIR [--port 0] [--token TOKEN] [--cut-once SUFFIX]

prints ``PORT <n>`` on stdout once listening. ``--cut-once`` makes the first download of a file
whose name ends with SUFFIX send half its bytes and drop the connection (an interrupted download).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

# The Hub's licence identifiers (https://huggingface.co/docs/hub/repositories-licenses)
LICENSES = frozenset(
    """apache-2.0 mit openrail bigscience-openrail-m creativeml-openrail-m bigscience-bloom-rail-1.0
bigcode-openrail-m afl-3.0 artistic-2.0 bsl-1.0 bsd bsd-2-clause bsd-3-clause bsd-3-clause-clear c-uda cc cc0-1.0
cc-by-2.0 cc-by-2.5 cc-by-3.0 cc-by-4.0 cc-by-sa-3.0 cc-by-sa-4.0 cc-by-nc-2.0 cc-by-nc-3.0 cc-by-nc-4.0 cc-by-nd-4.0
cc-by-nc-nd-3.0 cc-by-nc-nd-4.0 cc-by-nc-sa-2.0 cc-by-nc-sa-3.0 cc-by-nc-sa-4.0 cdla-sharing-1.0 cdla-permissive-1.0
cdla-permissive-2.0 wtfpl ecl-2.0 epl-1.0 epl-2.0 etalab-2.0 eupl-1.1 eupl-1.2 agpl-3.0 gfdl gpl gpl-2.0 gpl-3.0 lgpl
lgpl-2.1 lgpl-3.0 isc h-research intel-research lppl-1.3c ms-pl apple-ascl apple-amlr mpl-2.0 odc-by odbl openrail++
osl-3.0 postgresql ofl-1.1 ncsa unlicense zlib pddl lgpl-lr deepfloyd-if-license llama2 llama3 llama3.1 llama3.2
llama3.3 llama4 gemma unknown other""".split()
)
PIPELINE_TAGS = frozenset(
    """image-classification image-segmentation object-detection depth-estimation
image-feature-extraction zero-shot-image-classification feature-extraction""".split()
)
LFS_SUFFIXES = (".safetensors", ".pdparams", ".pth", ".bin", ".npy", ".npz")
_REPO = r"(?P<repo>[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*)"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Store:
    """Repositories as commits of {path: file record}; file bytes live in ``root/objects/<sha256>``."""

    def __init__(self, root: str, token: str | None, cut_once: str | None) -> None:
        self.root = root
        self.objects = os.path.join(root, "objects")
        os.makedirs(self.objects, exist_ok=True)
        self.repos: dict[str, dict[str, Any]] = {}
        self.token = token
        self.cut_once = cut_once
        self.cut_done: set[str] = set()
        self.lock = threading.Lock()

    def put_object(self, data_path: str) -> tuple[str, int]:
        digest = hashlib.sha256()
        with open(data_path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        oid = digest.hexdigest()
        os.replace(data_path, os.path.join(self.objects, oid))
        return oid, os.path.getsize(os.path.join(self.objects, oid))

    def has_object(self, oid: str) -> bool:
        return os.path.exists(os.path.join(self.objects, oid))

    def resolve(self, repo: str, rev: str) -> str | None:
        r = self.repos.get(repo)
        if r is None:
            return None
        if rev in r["branches"]:
            return r["branches"][rev]
        if rev in r["tags"]:
            return r["tags"][rev]
        return rev if rev in r["commits"] else None


def validate_card_yaml(content: str) -> list[str]:
    """The Hub's checks on a model card's metadata that porthub's cards exercise."""
    match = re.match(r"\A---\n(.*?)\n---\n", content, re.S)
    if not match:
        return []
    try:
        meta = yaml.safe_load(match.group(1))
    except yaml.YAMLError as exc:
        return [f"YAML metadata is not valid YAML: {exc}"]
    if meta is None:
        return []
    if not isinstance(meta, dict):
        return ["YAML metadata must be a mapping"]
    errors = []
    licence = meta.get("license")
    if licence is not None:
        for item in licence if isinstance(licence, list) else [licence]:
            if item not in LICENSES:
                errors.append(f'"license" must be one of the Hub licence identifiers, not {item!r}')
        if licence == "other":
            name = meta.get("license_name")
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9.-]+", name):
                errors.append('"license_name" is required with license: other, lowercase letters, digits, "-" and "."')
            if not isinstance(meta.get("license_link"), str):
                errors.append('"license_link" is required with license: other')
    for key in ("tags", "metrics", "language"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            errors.append(f'"{key}" must be a list of strings')
    datasets = meta.get("datasets")
    if datasets is not None and not (
        isinstance(datasets, str) or (isinstance(datasets, list) and all(isinstance(d, str) for d in datasets))
    ):
        errors.append('"datasets" must be a string or a list of strings')
    for key in ("library_name", "pipeline_tag"):
        if key in meta and not isinstance(meta[key], str):
            errors.append(f'"{key}" must be a string')
    if isinstance(meta.get("pipeline_tag"), str) and meta["pipeline_tag"] not in PIPELINE_TAGS:
        errors.append(f'"pipeline_tag" {meta["pipeline_tag"]!r} is not a known task')
    index = meta.get("model-index")
    if index is not None:
        errors += _model_index_errors(index)
    return errors


def _model_index_errors(index: Any) -> list[str]:
    if not isinstance(index, list):
        return ['"model-index" must be a list']
    errors = []
    for entry in index:
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("name"), str)
            or not isinstance(entry.get("results"), list)
        ):
            errors.append('"model-index" entries need "name" (string) and "results" (list)')
            continue
        for result in entry["results"]:
            task, dataset, metrics = (
                result.get(k) if isinstance(result, dict) else None for k in ("task", "dataset", "metrics")
            )
            if not (isinstance(task, dict) and isinstance(task.get("type"), str)):
                errors.append('"model-index" result needs task.type')
            if not (
                isinstance(dataset, dict)
                and isinstance(dataset.get("name"), str)
                and isinstance(dataset.get("type"), str)
            ):
                errors.append('"model-index" result needs dataset.name and dataset.type')
            if not (
                isinstance(metrics, list)
                and metrics
                and all(isinstance(m, dict) and isinstance(m.get("type"), str) and "value" in m for m in metrics)
            ):
                errors.append('"model-index" result needs metrics with type and value')
            source = result.get("source") if isinstance(result, dict) else None
            if source is not None and not (isinstance(source, dict) and isinstance(source.get("url"), str)):
                errors.append('"model-index" source needs a url')
    return errors


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    store: Store

    def log_message(self, fmt: str, *args: Any) -> None:
        sys.stderr.write("hubserver: " + fmt % args + "\n")

    # --------------------------------------------------------------- helpers
    def _send(
        self, status: int, body: bytes = b"", headers: dict[str, str] | None = None, ctype: str = "application/json"
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode(), headers)

    def _error(self, status: int, message: str, code: str | None = None) -> None:
        self._json(
            status,
            {"error": message},
            {"X-Error-Code": code, "X-Error-Message": message} if code else {"X-Error-Message": message},
        )

    def _body_to_file(self) -> str:
        fd, path = tempfile.mkstemp(dir=self.store.root, suffix=".upload")
        with os.fdopen(fd, "wb") as out:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                while True:
                    size = int(self.rfile.readline().strip().split(b";")[0], 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    out.write(self.rfile.read(size))
                    self.rfile.readline()
            else:
                remaining = int(self.headers.get("Content-Length", "0"))
                while remaining:
                    block = self.rfile.read(min(remaining, 1 << 20))
                    if not block:
                        break
                    out.write(block)
                    remaining -= len(block)
        return path

    def _body(self) -> bytes:
        path = self._body_to_file()
        with open(path, "rb") as fh:
            data = fh.read()
        os.unlink(path)
        return data

    def _authorised(self) -> bool:
        if self.store.token is None:
            return True
        if self.headers.get("Authorization") == f"Bearer {self.store.token}":
            return True
        self._error(401, "Invalid credentials in Authorization header")
        return False

    # --------------------------------------------------------------- routing
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/api/whoami-v2":
            self._json(200, {"type": "user", "name": "porthub-test", "auth": {"accessToken": {"role": "write"}}})
            return
        m = re.fullmatch(rf"/api/models/{_REPO}(?:/revision/(?P<rev>.+))?", path)
        if m:
            self._model_info(m["repo"], m["rev"] or "main")
            return
        m = re.fullmatch(rf"/api/models/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<sub>.*))?", path)
        if m:
            recursive = parse_qs(urlsplit(self.path).query).get("recursive", ["false"])[0].lower() in ("1", "true")
            self._tree(m["repo"], m["rev"], m["sub"] or "", recursive)
            return
        m = re.fullmatch(rf"/api/models/{_REPO}/refs", path)
        if m:
            self._refs(m["repo"])
            return
        m = re.fullmatch(rf"/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<file>.+)", path)
        if m:
            self._resolve(m["repo"], m["rev"], m["file"])
            return
        self._error(404, f"no route {path}")

    def do_POST(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path == "/api/validate-yaml":
            body = json.loads(self._body() or b"{}")
            errors = validate_card_yaml(str(body.get("content", "")))
            self._json(400 if errors else 200, {"errors": [{"message": e} for e in errors], "warnings": []})
            return
        if not self._authorised():
            self._body()
            return
        if path == "/api/repos/create":
            self._create(json.loads(self._body()))
            return
        m = re.fullmatch(rf"/api/models/{_REPO}/preupload/(?P<rev>.+)", path)
        if m:
            self._preupload(m["repo"], json.loads(self._body()))
            return
        m = re.fullmatch(rf"/{_REPO}\.git/info/lfs/objects/batch", path)
        if m:
            self._lfs_batch(m["repo"], json.loads(self._body()))
            return
        m = re.fullmatch(rf"/api/models/{_REPO}/commit/(?P<rev>.+)", path)
        if m:
            self._commit(m["repo"], m["rev"], self._body())
            return
        m = re.fullmatch(rf"/api/models/{_REPO}/(?P<kind>branch|tag)/(?P<rev>.+)", path)
        if m:
            self._ref(m["repo"], m["kind"], m["rev"], json.loads(self._body() or b"{}"))
            return
        self._body()
        self._error(404, f"no route {path}")

    def do_PUT(self) -> None:
        path = unquote(urlsplit(self.path).path)
        # Like the Hub's presigned storage URLs, an upload href is the authorisation: the client sends no token here.
        m = re.fullmatch(r"/lfs-upload/(?P<oid>[0-9a-f]{64})", path)
        if not m:
            self._body()
            self._error(404, f"no route {path}")
            return
        tmp = self._body_to_file()
        oid, _ = self.store.put_object(tmp)
        if oid != m["oid"]:
            os.unlink(os.path.join(self.store.objects, oid))
            self._error(400, f"uploaded bytes have sha256 {oid}, not {m['oid']}")
            return
        self._json(200, {})

    # --------------------------------------------------------------- upload side
    def _create(self, body: dict[str, Any]) -> None:
        name, org = body.get("name"), body.get("organization")
        repo = f"{org}/{name}" if org else str(name)
        if "/" not in repo:
            repo = f"porthub-test/{repo}"
        with self.store.lock:
            if repo in self.store.repos:
                self._error(409, "You already created this model repo")
                return
            first = uuid.uuid4().hex + uuid.uuid4().hex[:8]
            self.store.repos[repo] = {
                "branches": {"main": first},
                "tags": {},
                "commits": {first: {"files": {}, "parent": None}},
            }
        self._json(200, {"url": f"http://{self.headers['Host']}/{repo}", "name": repo})

    def _preupload(self, repo: str, body: dict[str, Any]) -> None:
        if repo not in self.store.repos:
            self._error(404, "Repository not found", "RepoNotFound")
            return
        files = []
        for f in body.get("files", []):
            lfs = f["path"].endswith(LFS_SUFFIXES) or int(f.get("size", 0)) >= 1_000_000
            files.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False})
        self._json(200, {"files": files, "commitOid": None})

    def _lfs_batch(self, repo: str, body: dict[str, Any]) -> None:
        host = self.headers["Host"]
        objects = []
        for obj in body.get("objects", []):
            entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
            if not self.store.has_object(obj["oid"]):
                entry["actions"] = {"upload": {"href": f"http://{host}/lfs-upload/{obj['oid']}", "header": {}}}
            objects.append(entry)
        self._json(200, {"transfer": "basic", "objects": objects}, {"Content-Type": "application/vnd.git-lfs+json"})

    def _commit(self, repo: str, rev: str, body: bytes) -> None:
        with self.store.lock:
            r = self.store.repos.get(repo)
            if r is None:
                self._error(404, "Repository not found", "RepoNotFound")
                return
            if rev not in r["branches"]:
                self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
                return
            files = dict(r["commits"][r["branches"][rev]]["files"])
            message = ""
            for line in body.decode().splitlines():
                if not line.strip():
                    continue
                item = json.loads(line)
                key, value = item["key"], item["value"]
                if key == "header":
                    message = value.get("summary", "")
                elif key == "file":
                    data = base64.b64decode(value["content"])
                    fd, tmp = tempfile.mkstemp(dir=self.store.root)
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(data)
                    oid, size = self.store.put_object(tmp)
                    files[value["path"]] = {"sha256": oid, "size": size, "lfs": False, "blob": git_blob_sha1(data)}
                elif key == "lfsFile":
                    if not self.store.has_object(value["oid"]):
                        self._error(422, f"LFS object {value['oid']} of {value['path']} was never uploaded")
                        return
                    files[value["path"]] = {"sha256": value["oid"], "size": int(value["size"]), "lfs": True}
                elif key == "deletedFile":
                    files.pop(value["path"], None)
            oid = hashlib.sha1(f"{repo}{rev}{time.time_ns()}{message}".encode()).hexdigest()
            r["commits"][oid] = {"files": files, "parent": r["branches"][rev], "message": message}
            r["branches"][rev] = oid
        self._json(
            200, {"commitOid": oid, "commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{oid}", "success": True}
        )

    def _ref(self, repo: str, kind: str, rev: str, body: dict[str, Any]) -> None:
        with self.store.lock:
            r = self.store.repos.get(repo)
            if r is None:
                self._error(404, "Repository not found", "RepoNotFound")
                return
            if kind == "branch":
                if rev in r["branches"]:
                    self._error(409, f"Branch {rev} already exists")
                    return
                start = self.store.resolve(repo, body.get("startingPoint") or "main")
                r["branches"][rev] = start
            else:
                tag = body.get("tag")
                if tag in r["tags"]:
                    self._error(409, f"Tag {tag} already exists")
                    return
                r["tags"][tag] = self.store.resolve(repo, rev)
        self._json(200, {})

    # --------------------------------------------------------------- download side
    def _commit_files(self, repo: str, rev: str) -> tuple[str, dict[str, Any]] | None:
        if repo not in self.store.repos:
            self._error(404, "Repository not found", "RepoNotFound")
            return None
        sha = self.store.resolve(repo, rev)
        if sha is None:
            self._error(404, f"Invalid rev id: {rev}", "RevisionNotFound")
            return None
        return sha, self.store.repos[repo]["commits"][sha]["files"]

    def _model_info(self, repo: str, rev: str) -> None:
        got = self._commit_files(repo, rev)
        if got:
            sha, files = got
            self._json(
                200,
                {
                    "id": repo,
                    "modelId": repo,
                    "sha": sha,
                    "private": False,
                    "siblings": [{"rfilename": p} for p in sorted(files)],
                },
            )

    def _tree(self, repo: str, rev: str, sub: str, recursive: bool) -> None:
        got = self._commit_files(repo, rev)
        if not got:
            return
        _sha, files = got
        prefix = f"{sub.rstrip('/')}/" if sub else ""
        out, dirs = [], set()
        for p, info in sorted(files.items()):
            if not p.startswith(prefix):
                continue
            rest = p[len(prefix) :]
            if "/" in rest:
                parts = rest.split("/")[:-1]
                dirs.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts) if recursive else 1))
                if not recursive:
                    continue
            entry = {"type": "file", "path": p, "size": info["size"], "oid": info.get("blob") or info["sha256"]}
            if info["lfs"]:
                entry["lfs"] = {"oid": info["sha256"], "size": info["size"], "pointerSize": 134}
            out.append(entry)
        out += [
            {"type": "directory", "path": d, "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0}
            for d in sorted(dirs)
        ]
        self._json(200, out)

    def _refs(self, repo: str) -> None:
        r = self.store.repos.get(repo)
        if r is None:
            self._error(404, "Repository not found", "RepoNotFound")
            return
        self._json(
            200,
            {
                "branches": [
                    {"name": b, "ref": f"refs/heads/{b}", "targetCommit": c} for b, c in r["branches"].items()
                ],
                "tags": [{"name": t, "ref": f"refs/tags/{t}", "targetCommit": c} for t, c in r["tags"].items()],
                "converts": [],
            },
        )

    def _resolve(self, repo: str, rev: str, file: str) -> None:
        got = self._commit_files(repo, rev)
        if not got:
            return
        sha, files = got
        info = files.get(file)
        if info is None:
            self._error(404, f"Entry not found: {file}", "EntryNotFound")
            return
        path = os.path.join(self.store.objects, info["sha256"])
        size = info["size"]
        etag = info["sha256"] if info["lfs"] else info["blob"]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{etag}"', "Accept-Ranges": "bytes"}
        if info["lfs"]:
            headers.update({"X-Linked-Etag": f'"{etag}"', "X-Linked-Size": str(size)})
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and self.command == "GET":
            m = re.fullmatch(r"bytes=(\d+)-(\d*)", rng.strip())
            if m:
                start = int(m[1])
                end = int(m[2]) if m[2] else size - 1
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        length = max(0, end - start + 1)
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        cut = None
        key = f"{repo}/{file}"
        if self.store.cut_once and file.endswith(self.store.cut_once) and key not in self.store.cut_done and start == 0:
            self.store.cut_done.add(key)
            cut = length // 2
        with open(path, "rb") as fh:
            fh.seek(start)
            remaining = length if cut is None else cut
            while remaining:
                block = fh.read(min(remaining, 1 << 20))
                if not block:
                    break
                self.wfile.write(block)
                remaining -= len(block)
        if cut is not None:
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token")
    parser.add_argument("--cut-once")
    args = parser.parse_args()
    os.makedirs(args.root, exist_ok=True)
    Handler.store = Store(args.root, args.token, args.cut_once)
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        shutil.rmtree(os.path.join(args.root, "objects"), ignore_errors=True)


if __name__ == "__main__":
    main()
