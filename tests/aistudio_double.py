"""A loopback test double of the AI Studio endpoints that aistudio-sdk 0.3.x calls, and a guard that
records every network address a process asks for and refuses any outside 127.0.0.1.

It stands in for AI Studio's HTTP API, not for porthub: tests drive it only through the official
client, pointed at it with ``STUDIO_MODEL_API_URL_PREFIX`` and ``STUDIO_GIT_HOST`` (the SDK reads both
at every call). What it serves, read from the SDK's source (``hub.py``, ``requests/hub.py``,
``file_download.py``, ``snapshot_download.py``, ``dot.py``):

API host (``STUDIO_MODEL_API_URL_PREFIX``)
  POST /modelcenter/v2/models/sdk/add            create a model repository in the token owner's namespace
  GET  /modelcenter/v2/models/sdk/checkPermit    may this token read the repository (file_exists)
  GET  /modelcenter/v2/models/getSuffixBlackList file types the server refuses
  POST /modelcenter/v2/models/checkYaml          the README's YAML front matter check
  POST /modelcenter/v2/statistic/repo            the download statistic (the SDK sends it to the hard-coded
                                                 production host; it reaches here only if a test redirects
                                                 ``aistudio_sdk.dot``)
Git host (``STUDIO_GIT_HOST``, Gitea)
  POST /api/v1/repos/O/R/preupload/REV           which paths are LFS
  POST /O/R.git/info/lfs/objects/batch           git-LFS batch (upload and verify actions)
  PUT  /lfs-upload/O/R/OID                       the bytes (sha256-checked; answers Content-Md5)
  POST /O/R.git/info/lfs/verify
  GET  /api/v1/repos/O/R/contents/PATH?ref=      file info (sha, size, last_commit_sha)
  POST /api/v1/repos/O/R/contents                one commit of several files (create/update, LFS pointers)
  GET  /api/v1/repos/O/R/git/trees/REV?recursive=true&page=&per_page=
  GET  /api/v1/repos/O/R/tags/TAG
  GET  /api/v1/repos/O/R/media/PATH?ref=         download (Range supported)

Rules enforced as the real service does (AI Studio's own limits; ``[I]`` where the SDK only implies them):
the owner part of a create request is not sent, so repositories land in the token owner's namespace;
an existing name answers "repo already created"; writes need the owner's token; a commit that names an
LFS object not uploaded, "create"s an existing file or "update"s with a stale sha is refused; the YAML
check rejects front matter that does not parse, is not a mapping, or whose ``license`` is not one of
AI Studio's licence names [I: AI Studio publishes no schema].

    python tests/aistudio_double.py --root DIR --user OWNER=TOKEN [--port 0] [--stats-delay S]

prints ``PORT <n>`` once listening. Tests in this repository usually start it in-process
(:func:`start`).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

#: licence names AI Studio shows (create_repo's default is "Apache License 2.0") [I: no published list]
AISTUDIO_LICENCES = frozenset({
    "Apache License 2.0", "MIT License", "MIT", "BSD 3-Clause License", "BSD 2-Clause License",
    "GNU General Public License v3.0", "GNU General Public License v2.0", "GNU Lesser General Public License v3.0",
    "Mozilla Public License 2.0", "Creative Commons Attribution 4.0", "Creative Commons Attribution Non Commercial 4.0",
    "Creative Commons Attribution Share Alike 4.0", "Other",
})
#: suffixes the server answers ``lfs: true`` for in preupload (besides the repository's .gitattributes) [I]
LFS_SUFFIXES = (".pdparams", ".pdiparams", ".safetensors", ".pth", ".pt", ".bin", ".onnx", ".ckpt", ".tar", ".zip")
#: file types the server refuses (getSuffixBlackList) [I]
BLACKLIST = [".exe", ".dll", ".bat", ".cmd", ".com", ".scr"]
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def validate_aistudio_yaml(text: str) -> str | None:
    """None when AI Studio's YAML check would accept ``text`` (the block between the README's ``---``
    lines), else the reason."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return f"yaml parse error: {str(exc).splitlines()[0]}"
    if not isinstance(data, dict):
        return "yaml must be a mapping of keys to values"
    licence = data.get("license")
    if licence is not None and (not isinstance(licence, str) or licence not in AISTUDIO_LICENCES):
        return f"license {licence!r} is not an AI Studio licence"
    for key, value in data.items():
        if not isinstance(key, str):
            return f"key {key!r} is not text"
        if isinstance(value, (dict, list)) and key not in ("tags",):
            return f"{key}: nested values are not supported"
    return None


@dataclass
class Entry:
    data_sha256: str
    size: int
    blob: bytes              # the git blob: the file itself, or the LFS pointer
    lfs: bool


@dataclass
class Repo:
    owner: str
    name: str
    private: bool
    model_name: str
    licence: str
    commits: dict[str, dict[str, Entry]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


class Double:
    """State and options of one double. ``requests`` records (method, path, status) of every request."""

    def __init__(self, root: str, users: dict[str, str], stats_delay: float = 0.0) -> None:
        self.root = root
        self.objects = os.path.join(root, "lfs")
        os.makedirs(self.objects, exist_ok=True)
        self.users = dict(users)             # token -> owner
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str, int]] = []
        self.statistics: list[dict[str, Any]] = []
        self.yaml_checks: list[tuple[str, str | None]] = []
        self.stats_delay = stats_delay
        self.reject_all_yaml = False
        self.lock = threading.RLock()
        self.url = ""

    # ------------------------------------------------------------------------------------ storage
    def object_path(self, oid: str) -> str:
        if not re.fullmatch(r"[0-9a-f]{64}", oid):
            raise ValueError(oid)
        return os.path.join(self.objects, oid)

    def has_object(self, oid: str, size: int) -> bool:
        path = self.object_path(oid)
        return os.path.isfile(path) and os.path.getsize(path) == size

    def resolve(self, repo: Repo, rev: str) -> str | None:
        if rev in repo.branches:
            return repo.branches[rev]
        if rev in repo.tags:
            return repo.tags[rev]
        if re.fullmatch(r"[0-9a-f]{7,40}", rev):
            hits = [c for c in repo.commits if c.startswith(rev)]
            return hits[0] if len(hits) == 1 else None
        return None

    def tree(self, repo: Repo, rev: str) -> dict[str, Entry] | None:
        commit = self.resolve(repo, rev)
        return None if commit is None else repo.commits[commit]

    def read(self, entry: Entry) -> bytes:
        if not entry.lfs:
            return entry.blob
        with open(self.object_path(entry.data_sha256), "rb") as fh:
            return fh.read()

    def files(self, owner: str, name: str, rev: str = "master") -> dict[str, bytes]:
        """Test helper: the repository's files at ``rev`` (path -> bytes)."""
        repo = self.repos[(owner, name)]
        return {p: self.read(e) for p, e in (self.tree(repo, rev) or {}).items()}

    def commit_count(self, owner: str, name: str) -> int:
        return len(self.repos[(owner, name)].commits)

    def hits(self, method: str, path_part: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and path_part in p)


def _lfs_pointer(blob: bytes) -> tuple[str, int] | None:
    text = blob.decode("utf-8", "replace")
    oid = re.search(r"^oid sha256:([0-9a-f]{64})$", text, re.MULTILINE)
    size = re.search(r"^size (\d+)$", text, re.MULTILINE)
    if not text.startswith("version https://git-lfs.github.com/spec/v1") or not oid or not size:
        return None
    return oid.group(1), int(size.group(1))


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aistudio-double"
    double: Double

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # ----------------------------------------------------------------------------------- plumbing
    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _json_body(self) -> Any:
        try:
            return json.loads(self._body() or b"{}")
        except json.JSONDecodeError:
            return None

    def _send(self, status: int, body: bytes | dict | list, headers: dict[str, str] | None = None) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream" if isinstance(body, bytes) else "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        with self.double.lock:
            self.double.requests.append((self.command, self.path, status))

    def _owner_of_token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        token = auth[len("token "):].strip() if auth.startswith("token ") else ""
        return self.double.users.get(token) if token else None

    def _studio(self, code: int, msg: str = "", result: Any = None) -> None:
        self._send(200, {"errorCode": code, "errorMsg": msg, "logId": uuid.uuid4().hex, "result": result})

    def _repo(self, owner: str, name: str, write: bool = False) -> Repo | None:
        repo = self.double.repos.get((owner, name))
        if repo is None:
            self._send(404, {"message": "The target couldn't be found.", "errors": []})
            return None
        who = self._owner_of_token()
        if (write or repo.private) and who != owner:
            self._send(403 if who else 401, {"message": "user does not have permission to this repository"})
            return None
        return repo

    # ------------------------------------------------------------------------------------ routing
    def do_GET(self) -> None:
        self._route("GET")

    def do_HEAD(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")

    def do_PUT(self) -> None:
        self._route("PUT")

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        path, query = url.path, {k: v[-1] for k, v in parse_qs(url.query).items()}
        # uploads and the (possibly slow) statistics run outside the lock that orders repository changes
        unlocked = method == "PUT" or path in ("/modelcenter/v2/statistic/repo", "/studio-dot/report")
        try:
            with contextlib.nullcontext() if unlocked else self.double.lock:
                self._dispatch(method, path, query)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _dispatch(self, method: str, path: str, query: dict[str, str]) -> None:
        api = re.fullmatch(r"/api/v1/repos/([^/]+)/([^/]+)/(preupload|contents|git/trees|tags|media)(?:/(.*))?", path)
        if method == "POST" and path == "/modelcenter/v2/models/sdk/add":
            return self._create()
        if method == "GET" and path == "/modelcenter/v2/models/sdk/checkPermit":
            return self._check_permit(query)
        if method == "GET" and path == "/modelcenter/v2/models/getSuffixBlackList":
            return self._studio(0, "", BLACKLIST)
        if method == "POST" and path == "/modelcenter/v2/models/checkYaml":
            return self._check_yaml()
        if method == "POST" and path in ("/modelcenter/v2/statistic/repo", "/studio-dot/report"):
            body = self._json_body()
            with self.double.lock:
                self.double.statistics.append({"path": path, "body": body})
            time.sleep(self.double.stats_delay)
            return self._studio(0)
        lfs = re.fullmatch(r"/([^/]+)/([^/]+)\.git/info/lfs/objects/batch", path)
        if method == "POST" and lfs:
            return self._lfs_batch(lfs.group(1), lfs.group(2))
        verify = re.fullmatch(r"/([^/]+)/([^/]+)\.git/info/lfs/verify", path)
        if method == "POST" and verify:
            body = self._json_body() or {}
            ok = self.double.has_object(str(body.get("oid", "0" * 64)), int(body.get("size", -1)))
            return self._send(200 if ok else 404, {"message": "ok" if ok else "object not found"})
        put = re.fullmatch(r"/lfs-upload/([^/]+)/([^/]+)/([0-9a-f]{64})", path)
        if method == "PUT" and put:
            return self._lfs_put(put.group(3))
        old_preupload = re.fullmatch(r"/([^/]+)/([^/]+)/preupload/(.+)", path)
        if method == "POST" and old_preupload:
            return self._preupload(old_preupload.group(1), old_preupload.group(2))
        if api:
            owner, name, kind, rest = unquote(api.group(1)), unquote(api.group(2)), api.group(3), api.group(4) or ""
            if kind == "preupload" and method == "POST":
                return self._preupload(owner, name)
            if kind == "contents" and method == "POST" and not rest:
                return self._commit(owner, name)
            if kind == "contents" and method == "GET":
                return self._contents(owner, name, unquote(rest), query.get("ref", "master"))
            if kind == "git/trees" and method == "GET":
                return self._trees(owner, name, unquote(rest), query)
            if kind == "tags" and method == "GET":
                return self._tag(owner, name, unquote(rest))
            if kind == "media" and method == "GET":
                return self._media(owner, name, unquote(rest), query.get("ref", "master"))
        self._send(404, {"message": f"no route {method} {path}"})

    # ---------------------------------------------------------------------------------- API host
    def _create(self) -> None:
        owner = self._owner_of_token()
        body = self._json_body() or {}
        if owner is None:
            return self._studio(401, "invalid access token")
        name = str(body.get("repoName", ""))
        if not _NAME.fullmatch(name):
            return self._studio(400, f"repo name {name!r} is invalid: ASCII letters, digits, '-' and '_'")
        if (owner, name) in self.double.repos:
            return self._studio(1, "repo already created")
        licence = str(body.get("license", "Apache License 2.0"))
        repo = Repo(owner, name, body.get("repoType") == 0, str(body.get("modelName") or name), licence)
        self.double.repos[(owner, name)] = repo
        self._studio(0, "", {"modelName": repo.model_name, "repoName": name, "repoType": 0 if repo.private else 1,
                             "desc": str(body.get("desc", "")), "license": licence})

    def _check_permit(self, query: dict[str, str]) -> None:
        owner, _, name = query.get("repoId", "").partition("/")
        repo = self.double.repos.get((owner, name))
        if repo is None:
            return self._studio(404, "repo not found")
        if repo.private and self._owner_of_token() != owner:
            return self._studio(403, "no permission to read this repo")
        self._studio(0, "", True)

    def _check_yaml(self) -> None:
        body = self._json_body() or {}
        text = str(body.get("yaml", ""))
        reason = "rejected by the test" if self.double.reject_all_yaml else validate_aistudio_yaml(text)
        self.double.yaml_checks.append((text, reason))
        if reason:
            return self._studio(40010, f"yaml check failed: {reason}")
        self._studio(0)

    # ---------------------------------------------------------------------------------- git host
    def _is_lfs(self, repo: Repo, path: str) -> bool:
        if path.lower().endswith(LFS_SUFFIXES):
            return True
        tree = self.double.tree(repo, "master") or {}
        attrs = tree.get(".gitattributes")
        if attrs is not None:
            import fnmatch

            for line in attrs.blob.decode("utf-8", "replace").splitlines():
                parts = line.split()
                if len(parts) >= 2 and "filter=lfs" in parts[1:] and fnmatch.fnmatch(path, parts[0]):
                    return True
        return False

    def _preupload(self, owner: str, name: str) -> None:
        repo = self._repo(owner, name, write=True)
        if repo is None:
            return
        body = self._json_body() or {}
        files = [{"path": f["path"], "lfs": self._is_lfs(repo, str(f["path"]))} for f in body.get("files", [])]
        self._send(200, {"files": files})

    def _lfs_batch(self, owner: str, name: str) -> None:
        repo = self._repo(owner, name, write=True)
        if repo is None:
            return
        body = self._json_body() or {}
        out = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid")), int(obj.get("size", -1))
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                return self._send(422, {"message": f"bad oid {oid!r}"})
            item: dict[str, Any] = {"oid": oid, "size": size}
            if not self.double.has_object(oid, size):
                item["actions"] = {
                    "upload": {"href": f"{self.double.url}/lfs-upload/{owner}/{name}/{oid}", "header": {}},
                    "verify": {"href": f"{self.double.url}/{owner}/{name}.git/info/lfs/verify", "header": {}},
                }
            out.append(item)
        self._send(200, {"transfer": "basic", "objects": out, "hash_algo": "sha256"})

    def _lfs_put(self, oid: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.double.objects, prefix=".put-")
        digest, md5 = hashlib.sha256(), hashlib.md5()
        remaining = int(self.headers.get("Content-Length") or 0)
        with os.fdopen(fd, "wb") as fh:
            data = self._body() if self.headers.get("Transfer-Encoding", "").lower() == "chunked" else None
            if data is not None:
                fh.write(data)
                digest.update(data)
                md5.update(data)
            while data is None and remaining > 0:
                block = self.rfile.read(min(remaining, 1 << 20))
                if not block:
                    break
                remaining -= len(block)
                fh.write(block)
                digest.update(block)
                md5.update(block)
        if digest.hexdigest() != oid:
            os.unlink(tmp)
            return self._send(400, {"message": "sha256 of the body does not match the object id"})
        os.replace(tmp, self.double.object_path(oid))
        self._send(200, {}, {"Content-Md5": base64.b64encode(md5.digest()).decode()})

    def _contents(self, owner: str, name: str, path: str, ref: str) -> None:
        repo = self._repo(owner, name)
        if repo is None:
            return
        commit = self.double.resolve(repo, ref)
        entry = repo.commits[commit].get(path) if commit else None
        if entry is None:
            return self._send(404, {"message": "GetContentsOrList", "errors": [f"object does not exist [{path}]"]})
        self._send(200, {"name": path.rsplit("/", 1)[-1], "path": path, "type": "file", "size": entry.size,
                         "sha": git_blob_sha1(entry.blob), "last_commit_sha": entry.data_sha256,
                         "Sha256": entry.data_sha256, "encoding": "base64",
                         "content": base64.b64encode(entry.blob).decode() if not entry.lfs else None})

    def _commit(self, owner: str, name: str) -> None:
        repo = self._repo(owner, name, write=True)
        if repo is None:
            return
        body = self._json_body()
        if not isinstance(body, dict) or not isinstance(body.get("files"), list):
            return self._send(422, {"message": "body must be {branch, message, files: [...]}"})
        branch = str(body.get("branch") or "master")
        if branch not in repo.branches and (repo.branches or branch != "master"):
            return self._send(404, {"message": f"branch does not exist [name: {branch}]"})
        head = repo.branches.get(branch)
        tree = dict(repo.commits[head]) if head else {}
        for f in body["files"]:
            path, op = str(f.get("path", "")), str(f.get("operation", "create"))
            if not path or path.startswith("/") or ".." in path.split("/"):
                return self._send(422, {"message": f"invalid path {path!r}"})
            if op == "delete":
                tree.pop(path, None)
                continue
            blob = base64.b64decode(str(f.get("content", "")))
            if op == "create" and path in tree:
                return self._send(422, {"message": f"repository file already exists [path: {path}]"})
            if op == "update" and (path not in tree or f.get("sha") != git_blob_sha1(tree[path].blob)):
                return self._send(409, {"message": f"sha does not match [given: {f.get('sha')}]: {path}"})
            if f.get("lfsPointer"):
                pointer = _lfs_pointer(blob)
                if pointer is None or not self.double.has_object(*pointer):
                    return self._send(422, {"message": f"LFS object of {path} was not uploaded"})
                tree[path] = Entry(pointer[0], pointer[1], blob, True)
            else:
                tree[path] = Entry(hashlib.sha256(blob).hexdigest(), len(blob), blob, False)
        record = json.dumps({"parent": head, "message": body.get("message"),
                             "tree": {p: git_blob_sha1(e.blob) for p, e in sorted(tree.items())}}).encode()
        sha = hashlib.sha1(record + str(time.time_ns()).encode()).hexdigest()
        repo.commits[sha] = tree
        repo.branches[branch] = sha
        self._send(201, {"commit": {"sha": sha, "message": body.get("message")}, "files": None})

    def _trees(self, owner: str, name: str, rev: str, query: dict[str, str]) -> None:
        repo = self._repo(owner, name)
        if repo is None:
            return
        commit = self.double.resolve(repo, rev)
        if commit is None:
            return self._send(404, {"message": f"sha not found [{rev}]"})
        entries: list[dict[str, Any]] = []
        dirs: set[str] = set()
        for path in sorted(repo.commits[commit]):
            parts = path.split("/")
            for i in range(1, len(parts)):
                d = "/".join(parts[:i])
                if d not in dirs:
                    dirs.add(d)
                    entries.append({"path": d, "mode": "040000", "type": "tree", "size": 0, "sha": "0" * 40})
            e = repo.commits[commit][path]
            entries.append({"path": path, "mode": "100644", "type": "blob", "size": len(e.blob),
                            "sha": git_blob_sha1(e.blob)})
        page, per_page = max(1, int(query.get("page", 1))), max(1, int(query.get("per_page", 1000)))
        chunk = entries[(page - 1) * per_page:page * per_page]
        self._send(200, {"sha": commit, "url": f"{self.double.url}/api/v1/repos/{owner}/{name}/git/trees/{commit}",
                         "tree": chunk, "truncated": page * per_page < len(entries), "page": page,
                         "total_count": len(entries)})

    def _tag(self, owner: str, name: str, tag: str) -> None:
        repo = self._repo(owner, name)
        if repo is None:
            return
        if tag not in repo.tags:
            return self._send(404, {"message": "tag does not exist"})
        self._send(200, {"name": tag, "commit": {"sha": repo.tags[tag]}})

    def _media(self, owner: str, name: str, path: str, ref: str) -> None:
        repo = self._repo(owner, name)
        if repo is None:
            return
        tree = self.double.tree(repo, ref)
        entry = tree.get(path) if tree else None
        if entry is None:
            return self._send(404, {"message": "not found"})
        data = self.double.read(entry)
        rng = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if rng:
            start = int(rng.group(1))
            end = min(int(rng.group(2)) if rng.group(2) else len(data) - 1, len(data) - 1)
            return self._send(206, data[start:end + 1], {"Content-Range": f"bytes {start}-{end}/{len(data)}"})
        self._send(200, data)


@contextlib.contextmanager
def start(root: str, users: dict[str, str], stats_delay: float = 0.0) -> Iterator[Double]:
    """The double on 127.0.0.1 on a free port, served from a thread of this process; yields its state
    (``double.url`` is the base URL for both host variables)."""
    double = Double(root, users, stats_delay)
    handler = type("BoundHandler", (Handler,), {"double": double})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    double.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="aistudio-double", daemon=True)
    thread.start()
    try:
        yield double
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def sdk_env(double: Double, token: str | None, home: str) -> dict[str, str]:
    """The environment that points aistudio-sdk at the double (and its caches and token file at ``home``)."""
    env = {"STUDIO_MODEL_API_URL_PREFIX": double.url, "STUDIO_GIT_HOST": double.url, "STUDIO_CDN_HOST": "127.0.0.1",
           "AISTUDIO_CACHE_HOME": home, "AISTUDIO_CACHE": os.path.join(home, "sdk-cache"), "HOME": home,
           "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost", "AISTUDIO_LOG": "critical"}
    if token is not None:
        env["AISTUDIO_ACCESS_TOKEN"] = token
    return env


# ------------------------------------------------------------------------------ the loopback guard
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def _is_loopback(host: Any) -> bool:
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    if not isinstance(host, str):
        return False
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def install_loopback_guard(log_path: str | None = None) -> list[tuple[str, Any]]:
    """Record every address this process resolves or connects to (in the returned list and, when
    given, one JSON line each in ``log_path``), and refuse any that is not loopback, before a packet
    leaves: name lookups (``getaddrinfo``) and connects of every socket (``create_connection`` goes
    through both)."""
    seen: list[tuple[str, Any]] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def note(kind: str, address: Any) -> None:
        seen.append((kind, address))
        if log_path:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps([kind, repr(address), _is_loopback(address[0] if isinstance(address, tuple)
                                                                        else address)]) + "\n")

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        note("resolve", host)
        if host is not None and not _is_loopback(host):
            raise socket.gaierror(socket.EAI_NONAME, f"loopback guard: {host!r} is not 127.0.0.1")
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            note("connect", address)
            if not _is_loopback(address[0]):
                raise ConnectionRefusedError(f"loopback guard: {address!r} is not 127.0.0.1")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            note("connect", address)
            if not _is_loopback(address[0]):
                return 111
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]

    def undo() -> None:
        socket.getaddrinfo = real_getaddrinfo
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]

    _undo.append(undo)
    return seen


_undo: list[Callable[[], None]] = []


def remove_loopback_guard() -> None:
    """Undo :func:`install_loopback_guard` (the last one installed)."""
    if _undo:
        _undo.pop()()


#: ``python -c GUARDED_CLI ARGS...`` runs ``porthub ARGS...`` under the guard, logging to
#: ``$PORTHUB_TEST_ADDRESS_LOG``
GUARDED_CLI = (
    "import os, runpy, sys\n"
    f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
    "import aistudio_double\n"
    "aistudio_double.install_loopback_guard(os.environ['PORTHUB_TEST_ADDRESS_LOG'])\n"
    "sys.argv = ['porthub', *sys.argv[1:]]\n"
    "runpy.run_module('porthub.cli', run_name='__main__')\n"
)
#: ``python -c GUARDED_PY FILE ARGS...`` runs a Python file under the guard
GUARDED_PY = GUARDED_CLI.replace("sys.argv = ['porthub', *sys.argv[1:]]\nrunpy.run_module('porthub.cli', "
                                 "run_name='__main__')\n",
                                 "path = sys.argv[1]\nsys.argv = sys.argv[1:]\n"
                                 "runpy.run_path(path, run_name='__main__')\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True)
    parser.add_argument("--user", action="append", default=[], help="OWNER=TOKEN")
    parser.add_argument("--stats-delay", type=float, default=0.0)
    args = parser.parse_args()
    users = {tok: owner for owner, _, tok in (u.partition("=") for u in args.user)}
    with start(args.root, users, args.stats_delay) as double:
        print(f"PORT {urlsplit(double.url).port}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
