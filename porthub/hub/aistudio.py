"""AI Studio (Baidu's model hub, where Paddle users and PaddleX look) as a porthub hub, through the
official client, aistudio-sdk 0.3.x, imported here only and only when AI Studio is asked.

Facts of the SDK (0.3.9) this module relies on:

* Hosts: ``STUDIO_MODEL_API_URL_PREFIX`` (REST API, default https://aistudio.baidu.com) and
  ``STUDIO_GIT_HOST`` (Gitea, default https://git.aistudio.baidu.com), read at every call.
* The default branch is ``master``. The token comes from ``token=``, ``AISTUDIO_ACCESS_TOKEN`` or
  ``${AISTUDIO_CACHE_HOME:-$HOME}/.cache/aistudio/.auth/token``; porthub resolves it itself and passes it
  to every call (the SDK would otherwise copy the token file into the process environment).
* ``create_repo`` sends only the name: the repository is created in the namespace of the token's owner,
  whatever owner the id names, and errors come back as a dict (``error_code`` 10003: it exists).
* Uploads report nothing: files the server or the SDK refuses (a README whose YAML fails AI Studio's
  check, a non-LFS file over 5 MB, a forbidden suffix, a failed commit) are skipped with a printed
  line. porthub therefore reads back what landed after every upload and fails when anything is missing.
* Telemetry: ``snapshot_download`` and ``model_file_download`` post a download statistic to the
  hard-coded production host (``aistudio_sdk.dot``), synchronously, without timeout or opt-out. While
  porthub calls the SDK it replaces those hooks: nothing is sent unless ``PORTHUB_AISTUDIO_STATS=1``, and
  then from a daemon thread that porthub waits for at most ``STATS_WAIT_S`` seconds. The upload
  statistic (which would carry the token) is never sent.
* The SDK indexes a download folder with pickle files (``.msc``, ``.mdl``) that it unpickles on its next
  call. porthub downloads into its own cache (``<local hub>/aistudio/<owner>/<name>@<revision>``), only
  ``config.json`` and plain ``*.pdparams`` files, so a repository cannot plant one.

An AI Studio repository holds what a Paddle user needs: ``model.pdparams``, the Paddle inference
model and any other file of the built repository that is not PyTorch's, ``config.json``, a
``.gitattributes`` marking weights as LFS, and its own ``README.md`` (minimal YAML front matter, as
AI Studio's check accepts it, then usage, the measured parity table, provenance and citation).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import re
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, Callable
from urllib.parse import urlsplit

from ..catalogue import OFFICIAL, OFFICIAL_SOURCE, USER
from ..errors import (
    AIStudioTokenError,
    HubError,
    HubUnreachableError,
    IntegrityError,
    ReadmeRejectedError,
)
from ..io import atomic_write
from ..spec import PADDLE, TORCH
from .local import hub_home
from .repo import (
    CONFIG_NAME,
    Fetched,
    check_relpath,
    check_repo_id,
    files_for,
    read_config,
    safe_join,
    sha256_file,
)

__all__ = [
    "DEFAULT_REVISION",
    "LFS_PATTERNS",
    "STATS_ENV",
    "aistudio_licence",
    "cache_dir",
    "check_publishable",
    "fetch",
    "git_host",
    "pretrained_state",
    "publish",
    "published_source_sha256",
    "render_card",
    "require_token",
    "resolve_token",
    "sdk",
    "stage_folder",
]

DEFAULT_REVISION = "master"
STATS_ENV = "PORTHUB_AISTUDIO_STATS"
#: how long porthub waits, at most, for an opted-in download statistic before it goes on
STATS_WAIT_S = 2.0
#: files AI Studio must store as LFS (its server refuses non-LFS files over 5 MB)
LFS_PATTERNS = ("*.pdparams", "*.pdiparams", "*.safetensors", "*.pth", "*.bin", "*.onnx", "*.pdmodel")
_GIT_HOST = "https://git.aistudio.baidu.com"
_HOW_TO_TOKEN = ("pass token=, set AISTUDIO_ACCESS_TOKEN, or save it with `aistudio config -t TOKEN` "
                 "(an access token from https://aistudio.baidu.com/account/accessToken)")
#: AI Studio spells licences by name, as create_repo's default "Apache License 2.0" [notes: aistudio.md 2.7]
_LICENCES = {"apache-2.0": "Apache License 2.0", "mit": "MIT License", "bsd-3-clause": "BSD 3-Clause License",
             "bsd-2-clause": "BSD 2-Clause License", "gpl-3.0": "GNU General Public License v3.0",
             "gpl-2.0": "GNU General Public License v2.0", "cc-by-4.0": "Creative Commons Attribution 4.0",
             "cc-by-nc-4.0": "Creative Commons Attribution Non Commercial 4.0",
             "cc-by-sa-4.0": "Creative Commons Attribution Share Alike 4.0"}
_sdk_lock = threading.RLock()
_pending_stats: list[threading.Thread] = []

Progress = Callable[[str], None]


# ------------------------------------------------------------------------------------ the client
def sdk() -> Any:
    """aistudio_sdk's modules this file uses, or a clear error saying how to get them."""
    try:
        hub = importlib.import_module("aistudio_sdk.hub")
        file_download = importlib.import_module("aistudio_sdk.file_download")
        snapshot = importlib.import_module("aistudio_sdk.snapshot_download")
        dot = importlib.import_module("aistudio_sdk.dot")
    except ImportError as exc:
        raise HubError("AI Studio needs aistudio-sdk 0.3: pip install 'porthub[aistudio]' "
                       f"(or use the local hub or the Hugging Face Hub) [{exc}]") from None
    if not hasattr(hub, "upload_folder") or not hasattr(file_download, "model_file_download"):
        raise HubError("this aistudio-sdk is older than 0.3 (no upload_folder/model_file_download); "
                       "pip install 'porthub[aistudio]' to get aistudio-sdk>=0.3,<0.4")
    return SimpleNamespace(hub=hub, file_download=file_download, snapshot=snapshot, dot=dot)


def git_host() -> str:
    return os.environ.get("STUDIO_GIT_HOST", _GIT_HOST).rstrip("/")


def resolve_token(token: str | None = None) -> str | None:
    """The access token as the SDK finds it: ``token``, ``AISTUDIO_ACCESS_TOKEN``, then the SDK's token file."""
    if token:
        return token.strip()
    env = os.environ.get("AISTUDIO_ACCESS_TOKEN", "").strip()
    if env:
        return env
    home = os.environ.get("AISTUDIO_CACHE_HOME") or os.environ.get("HOME") or os.path.expanduser("~")
    path = os.path.join(home, ".cache", "aistudio", ".auth", "token")
    with contextlib.suppress(OSError), open(path, encoding="utf-8") as fh:
        return fh.read().strip() or None
    return None


def require_token(token: str | None = None) -> str:
    found = resolve_token(token)
    if not found:
        raise AIStudioTokenError(f"publishing to AI Studio needs an access token; {_HOW_TO_TOKEN}")
    return found


def _stats_enabled() -> bool:
    return os.environ.get(STATS_ENV, "").strip() == "1"


def _statistic(dot: Any) -> Callable[..., None]:
    """The SDK's download statistic, sent only when the user opted in, from a daemon thread."""

    def send(repo_id: str, revision: str, action: Mapping[str, Any]) -> None:
        if not _stats_enabled():
            return
        thread = threading.Thread(target=dot.post_repo_statistic, args=(repo_id, revision, dict(action)),
                                  name="aistudio-statistic", daemon=True)
        thread.start()
        _pending_stats.append(thread)

    return send


def _wait_for_statistics() -> None:
    # an opted-in statistic gets a short, bounded chance to leave before a short-lived process exits
    deadline = STATS_WAIT_S
    while _pending_stats:
        thread = _pending_stats.pop()
        thread.join(timeout=max(0.0, deadline))
        deadline = 0.0


class _Captured(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _calling(client: Any) -> Iterator[list[str]]:
    """Around every SDK call: the statistics hooks replaced (see the module docstring), and the SDK's
    prints, progress bars and log lines captured (it prints to stdout, which would corrupt porthub's
    --json output); yields the captured lines, which carry the SDK's reasons for skipped files."""
    logger = logging.getLogger("aistudio_sdk")
    captured = _Captured()
    buffer = io.StringIO()
    with _sdk_lock:
        saved = (client.file_download.post_repo_statistic_async, client.snapshot.post_repo_statistic,
                 getattr(client.hub, "post_upload_statistic_async", None), logger.handlers[:], logger.level,
                 logger.propagate)
        send = _statistic(client.dot)
        client.file_download.post_repo_statistic_async = send
        client.snapshot.post_repo_statistic = send
        if saved[2] is not None:
            client.hub.post_upload_statistic_async = lambda *args, **kwargs: None
        logger.handlers, logger.propagate = [captured], False
        logger.setLevel(logging.INFO)
        lines: list[str] = []
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                yield lines
        finally:
            client.file_download.post_repo_statistic_async, client.snapshot.post_repo_statistic = saved[0], saved[1]
            if saved[2] is not None:
                client.hub.post_upload_statistic_async = saved[2]
            logger.handlers, logger.propagate = saved[3], saved[5]
            logger.setLevel(saved[4])
            lines += captured.lines + [ln for ln in re.split(r"[\r\n]+", buffer.getvalue()) if ln.strip()]


def _network_errors() -> tuple[type[BaseException], ...]:
    import requests

    return (requests.exceptions.ConnectionError, requests.exceptions.Timeout)


def _reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the git host opens (the SDK's own timeouts are 30 s to an hour)."""
    proxies = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
    if any(os.environ.get(k) for k in proxies):
        return True
    parts = urlsplit(url)
    if not parts.hostname:
        raise HubError(f"STUDIO_GIT_HOST {url!r} is not a URL; unset it or set it like {_GIT_HOST}")
    try:
        with socket.create_connection((parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)),
                                      timeout=timeout):
            return True
    except OSError:
        return False


def _offline() -> bool:
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("PORTHUB_OFFLINE", "HF_HUB_OFFLINE"))


def _split(repo_id: str) -> tuple[str, str]:
    owner, name = check_repo_id(repo_id).split("/")
    if "." in name:
        # the SDK's cache turns '.' into '___' and links folders: names with dots do not round-trip
        raise HubError(f"AI Studio repository names cannot contain '.' ({repo_id!r}); use '-' or '_'")
    return owner, name


# ----------------------------------------------------------------------------------- the card
def aistudio_licence(text: str) -> str:
    """AI Studio's name of a spec's free-text licence ("MIT (LICENSE of ...)" -> "MIT License"); a licence the
    authors did not state is "Other", and the card says what is known."""
    first = re.split(r"[\s(:;,]", text.strip(), maxsplit=1)[0].lower() if text.strip() else ""
    return _LICENCES.get(first, "Other")


def _table(rows: Sequence[Sequence[Any]], head: Sequence[str]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(out + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def render_card(config: Mapping[str, Any], repo_id: str) -> str:
    """The AI Studio README.md of a staged repository, from its config.json alone."""
    variant, arch = config["variant"], config["architecture"]
    source, eq, pre = config["source_checkpoint"], config["equivalence"], config["preprocessing"]
    pdparams = config["frameworks"][PADDLE]["file"]
    rows = [[r["framework"], r["file"], r["dtype"], f"{r['max_abs_diff']:.3e}", f"{r['tolerance']:.1e}"]
            for r in eq["results"]]
    files = [[f"`{n}`", i.get("role") or i.get("framework", "-"), i.get("size", "-"),
              f"`{str(i.get('sha256', ''))[:16]}...`"]
             for n, i in config["files"].items() if n != "README.md"]
    inference = [n for n in config["files"]
                 if n.endswith((".pdmodel", ".json", ".pdiparams")) and n.startswith("inference")]
    meta = config.get("meta", {})
    size = "x".join(str(n) for n in pre.get("input_size", []))
    kind = str((config.get("provenance") or {}).get("kind", USER))
    if kind in (OFFICIAL, OFFICIAL_SOURCE):
        what = f"The official {config['family']} weights of {variant}"
    else:
        what = (f"A user-supplied checkpoint `{source['name']}` of {variant} (not the official release as far as "
                "porthub can tell)")
    body = f"""---
license: {aistudio_licence(str(config.get('licence', '')))}
---

# {variant}: {meta.get('readme_name', variant)} for PaddlePaddle

{what}, converted by porthub {config['porthub_version']} for PaddlePaddle and checked against the source
checkpoint (the parity table below). Licence of the official release:
{config.get('licence') or 'see the official repository'}.

## Usage

With porthub (`pip install 'porthub[paddle,aistudio]'`):

```python
import porthub
# PORTHUB_HUBS=aistudio (or local,hf,aistudio, the default order) says where pretrained weights come from
model = porthub.create_model("{variant}", framework="paddle", pretrained=True)
model = porthub.from_pretrained("{repo_id}", framework="paddle", hub="aistudio")
```

With Paddle alone (porthub's Paddle `{arch}` built from `config.json`):

```python
import json, paddle
from aistudio_sdk.snapshot_download import snapshot_download
folder = snapshot_download(repo_id="{repo_id}")
config = json.load(open(f"{{folder}}/config.json"))        # architecture, constructor_kwargs, preprocessing
from porthub.hub import model_from_config
model = model_from_config(config, "paddle")
missing, unexpected = model.set_state_dict(paddle.load(f"{{folder}}/{pdparams}"))
model.eval()
```

{('Paddle inference model: ' + ', '.join(f'`{n}`' for n in inference) + '.') if inference else ''}
Evaluation preprocessing: resize {pre.get('resize', '-')}, centre crop {size}
(crop fraction {pre.get('crop_fraction', '-')}),
{pre.get('interpolation', '-')} interpolation, mean {list(pre.get('mean', []))}, std {list(pre.get('std', []))}.

## Parity with the official checkpoint

porthub ran the source checkpoint in PyTorch on `test/input.npy` and the converted files in each
framework and dtype (max |difference| of the output; `{pdparams}` holds the same tensors as the measured
Paddle file, checked bit for bit: {eq.get('pdparams_identical_to_paddle_safetensors')}):

{_table(rows, ['framework', 'file', 'dtype', 'max abs diff', 'limit'])}

## Files

{_table(files, ['file', 'role', 'bytes', 'sha256'])}

## Provenance

* Weights: {kind}{(' (downloaded from ' + str(config['provenance']['location']) + ')')
                   if (config.get('provenance') or {}).get('location') else ''}
* Source checkpoint: `{source['name']}` (sha256 `{source['sha256']}`, layout `{source['layout']}`,
  official file `{source.get('official_file', '')}`)
* Official code: {config.get('official_repo', '')}
* Converted by porthub {config['porthub_version']}; every file's sha256 is in `config.json` and checked on download.

## Citation

{config.get('paper') or 'See the official repository.'}
"""
    return body


def stage_folder(built: str, config: Mapping[str, Any], out: str, repo_id: str) -> dict[str, Any]:
    """Write the AI Studio repository of a built porthub repository into ``out``: the Paddle state dict,
    every file that is not PyTorch's (the reference pair; the Paddle inference model and other exports
    when present), a .gitattributes, the AI Studio card and a config.json that lists exactly these files."""
    table = config["frameworks"]
    # a built porthub repository names its state dict under "pdparams"; an AI Studio one as the file itself
    pdparams = table.get(PADDLE, {}).get("pdparams") or table.get(PADDLE, {}).get("file")
    if not pdparams or not pdparams.endswith(".pdparams") or pdparams not in config["files"]:
        raise HubError(f"{built} has no Paddle state dict (config.json frameworks.paddle.pdparams); build it again")
    dropped = {table[fw]["file"] for fw in table} - {pdparams}
    files: dict[str, dict[str, Any]] = {}
    for name, info in config["files"].items():
        if name in dropped or name == "README.md" or info.get("framework") == TORCH:
            continue
        dst = os.path.join(out, *check_relpath(name))
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(safe_join(built, name), dst)
        files[name] = dict(info)
    with atomic_write(os.path.join(out, ".gitattributes")) as fh:
        fh.write("".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode())
    files[".gitattributes"] = {"role": "git-LFS rules"}
    staged: dict[str, Any] = {**config, "repo_id": repo_id, "hub": "aistudio",
                              "frameworks": {PADDLE: {"file": pdparams, "layout": table[PADDLE]["layout"]}},
                              "files": files}
    card = render_card(staged, repo_id)
    with atomic_write(os.path.join(out, "README.md")) as fh:
        fh.write(card.encode("utf-8"))
    files["README.md"] = {"role": "model card (AI Studio)"}
    for name, info in files.items():
        path = os.path.join(out, *name.split("/"))
        info["sha256"], info["size"] = sha256_file(path), os.path.getsize(path)
    with atomic_write(os.path.join(out, CONFIG_NAME)) as fh:
        fh.write((json.dumps(staged, indent=1) + "\n").encode("utf-8"))
    return staged


# ------------------------------------------------------------------------------------- publishing
def _create(client: Any, owner: str, name: str, token: str, licence: str, private: bool, desc: str) -> bool:
    """Create the repository; False when it exists already (the push then updates it)."""
    with _calling(client):
        answer = client.hub.create_repo(repo_id=name, model_name=name, desc=desc, license=licence,
                                        private=private, token=token)
    code = answer.get("error_code") if isinstance(answer, dict) else None
    if code is None and isinstance(answer, dict) and answer.get("repo_id") == name:
        return True
    if code == 10003:
        return False
    message = str(answer.get("error_msg") if isinstance(answer, dict) else answer)
    if code == 10002 or "token" in message.lower():
        raise AIStudioTokenError(f"AI Studio refused the access token ({message}); {_HOW_TO_TOKEN}")
    raise HubError(f"AI Studio did not create {owner}/{name}: {message} (error {code}, log id "
                   f"{answer.get('log_id') if isinstance(answer, dict) else '?'}); "
                   "check the name (ASCII letters, digits, "
                   "'-', '_') and the token")


def _landed(client: Any, repo_id: str, folder: str, names: Sequence[str], token: str, lines: list[str]) -> None:
    """Read back what the upload left: README.md and config.json byte for byte, every other file by name."""
    with tempfile.TemporaryDirectory(prefix="porthub-aistudio-check-") as check:
        for name in ("README.md", CONFIG_NAME):
            try:
                got: str | None = _download(client, repo_id, name, DEFAULT_REVISION, check, token)
            except HubError:
                got = None
            with open(os.path.join(folder, name), "rb") as fh:
                want = fh.read()
            same = False
            if got and os.path.isfile(got):
                with open(got, "rb") as fh:
                    same = fh.read() == want
            if same:
                continue
            said = next((ln for ln in lines if "check readme fail" in ln), "")
            # the SDK's line is "check readme fail:<server message>,skip<local path>"
            reasons = re.sub(r",\s*skip.*$", "", said.split("check readme fail", 1)[-1]).lstrip(": ")
            reasons = reasons or "no reason given"
            if name == "README.md":
                raise ReadmeRejectedError(
                    f"AI Studio did not take README.md for {repo_id} ({reasons}): its YAML front matter failed AI "
                    "Studio's check, so the repository shows no (or an old) model card; fix the card's front matter "
                    "and push again")
            raise HubError(f"{name} of {repo_id} on AI Studio is not the one just uploaded; push again")
    for name in names:
        with _calling(client):
            there = client.hub.file_exists(repo_id, name, revision=DEFAULT_REVISION, token=token)
        if there is not True:
            skipped = "; ".join(ln for ln in lines if name in ln) or "no reason given"
            raise HubError(f"{name} did not land in {repo_id} on AI Studio ({skipped}); push again")


def check_publishable(repo_id: str, revision: str | None = None, token: str | None = None) -> str:
    """The token for a push to ``repo_id``, after the checks that cost nothing (name, branch, token, client
    installed, AI Studio's git host answering), so that a push fails before its conversion."""
    _split(repo_id)
    if revision not in (None, DEFAULT_REVISION):
        raise HubError(f"AI Studio uploads go to the branch {DEFAULT_REVISION} (the SDK cannot create branches); "
                       f"leave out the revision {revision!r}")
    found = require_token(token)
    sdk()
    if not _reachable(git_host()):
        raise HubUnreachableError(f"cannot reach AI Studio ({git_host()}); check the network and STUDIO_GIT_HOST, "
                                  "or publish to the local hub")
    return found


def publish(folder: str, repo_id: str, token: str | None = None, revision: str | None = None, private: bool = False,
            commit_message: str | None = None, progress: Progress | None = None) -> dict[str, Any]:
    """Stage the AI Studio repository of a built porthub repository ``folder`` and upload it as one
    commit to ``master``, creating the repository when it does not exist (else updating it). The owner
    part of ``repo_id`` must be the token owner's AI Studio namespace: AI Studio creates repositories
    there whatever owner the id names."""
    say = progress or (lambda _msg: None)
    token = check_publishable(repo_id, revision, token)
    owner, name = _split(repo_id)
    client = sdk()
    config = read_config(os.path.join(folder, CONFIG_NAME))
    with tempfile.TemporaryDirectory(prefix="porthub-aistudio-") as out:
        staged = stage_folder(folder, config, out, repo_id)
        licence = aistudio_licence(str(config.get("licence", "")))
        errors = _network_errors()
        try:
            say(f"creating {name} on AI Studio (in the token owner's namespace)")
            created = _create(client, owner, name, token, licence, private,
                              f"{config['variant']} converted by porthub for PaddlePaddle")
            say(f"uploading {len(staged['files']) + 1} files to {repo_id} ({'new' if created else 'update'})")
            with _calling(client) as lines:
                try:
                    client.hub.upload_folder(repo_id=repo_id, folder_path=out, token=token, revision=DEFAULT_REVISION,
                                             commit_message=commit_message or f"porthub: publish {config['variant']}")
                except ValueError as exc:
                    if "preupload" not in str(exc):
                        raise HubError(f"AI Studio refused the upload to {repo_id}: {exc}") from None
                    raise HubError(
                        f"AI Studio refused the upload to {repo_id} ({exc}): AI Studio created {name} in the namespace "
                        "of the token's owner, whatever owner the id names; give the id as <your AI Studio user name "
                        f"or UID>/{name}") from None
            say("checking what landed")
            _landed(client, repo_id, out, [n for n in staged["files"] if n not in ("README.md",)], token, lines)
        except errors as exc:
            raise HubUnreachableError(f"AI Studio stopped answering during the push ({type(exc).__name__}); "
                                      "nothing may have been committed: push again") from None
        finally:
            _wait_for_statistics()
    return {"repo_id": repo_id, "hub": "aistudio", "endpoint": git_host(), "revision": DEFAULT_REVISION,
            "created": created, "commit": None, "aistudio_files": sorted([*staged["files"], CONFIG_NAME])}


# ------------------------------------------------------------------------------------- downloading
def cache_dir(repo_id: str, revision: str | None = None) -> str:
    """Where porthub keeps files downloaded from AI Studio: ``<local hub>/aistudio/<owner>/<name>@<revision>``."""
    owner, name = _split(repo_id)
    rev = (revision or DEFAULT_REVISION).replace("/", "--")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}", rev) or ".." in rev:
        raise HubError(f"revision {revision!r} is not a branch, tag or commit name; use e.g. master or a commit")
    return safe_join(os.path.join(hub_home(), "aistudio"), f"{owner}/{name}@{rev}")


def _weight_names(config: Mapping[str, Any], where: str) -> list[str]:
    """The Paddle state dict a config names, refused unless it is a plain ``*.pdparams`` path: the SDK
    keeps pickled index files (``.msc``, ``.mdl``) in the download folder and unpickles them on its next
    call, so a hostile config must not be able to make it download a file over one of them."""
    names = files_for(config, (PADDLE,))
    for name in names:
        if not name.endswith(".pdparams") or any(part.startswith(".") for part in check_relpath(name)):
            raise HubError(f"{where}: config.json names {name!r} as the Paddle weights; porthub downloads only "
                           "plain *.pdparams files from AI Studio (the repository is malformed or hostile)")
    return names


def _check(path: str, name: str, config: Mapping[str, Any], where: str) -> None:
    want = config["files"][name].get("sha256") if isinstance(config["files"][name], dict) else None
    got = sha256_file(path)
    if got != want:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise IntegrityError(f"{name} from {where} has sha256 {got[:16]}..., "
                             f"but config.json records {str(want)[:16]}...; "
                             "the bad file was removed from the cache: download again")


def _from_cache(repo_id: str, folder: str, why: str) -> Fetched:
    config_path = os.path.join(folder, CONFIG_NAME)
    if not os.path.isfile(config_path):
        error = HubUnreachableError if "reached" in why else HubError
        raise error(f"{repo_id} is not in porthub's AI Studio cache ({folder}) and {why}; download it once online "
                    "(unset PORTHUB_OFFLINE / HF_HUB_OFFLINE), or use another hub")
    config = read_config(config_path)
    names = _weight_names(config, f"the AI Studio cache of {repo_id}")
    paths = {CONFIG_NAME: config_path}
    for name in names:
        path = safe_join(folder, name)
        if not os.path.isfile(path):
            raise HubError(f"porthub's AI Studio cache of {repo_id} lacks {name} and {why}; download it again online")
        _check(path, name, config, f"the AI Studio cache of {repo_id}")
        paths[name] = path
    return Fetched(config, paths, f"AI Studio cache {folder}", "aistudio", None, names)


def _download(client: Any, repo_id: str, name: str, revision: str, folder: str, token: str | None) -> str:
    errors_module = importlib.import_module("aistudio_sdk.errors")
    sdk_errors = tuple(getattr(errors_module, n) for n in ("NotExistError", "RequestError"))
    with _calling(client) as lines:
        try:
            path = client.file_download.model_file_download(repo_id, name, revision=revision, local_dir=folder,
                                                            token=token)
        except sdk_errors:
            path = "missing"
    if path == "missing":
        raise HubError(f"AI Studio has no {name} in {repo_id}@{revision} (no such repository, revision or file, or "
                       "a private one this token cannot read); is it a porthub repository?")
    if not path or not os.path.isfile(path):
        detail = next((ln for ln in reversed(lines) if "rror" in ln), "no detail")
        raise HubError(f"downloading {name} of {repo_id}@{revision} from AI Studio failed ({detail}); try again")
    return path


def fetch(repo_id: str, frameworks: Sequence[str] = (PADDLE,), revision: str | None = None,
          token: str | None = None) -> Fetched:
    """config.json and the Paddle state dict of an AI Studio repository, each checked against its sha256.
    An AI Studio repository holds Paddle weights only; either framework loads them (the caller converts
    through the canonical layout). Offline (PORTHUB_OFFLINE=1 or HF_HUB_OFFLINE=1) or with AI Studio
    unreachable, porthub's cache of earlier downloads answers."""
    del frameworks  # one weight file serves both frameworks
    revision = revision or DEFAULT_REVISION
    folder = cache_dir(repo_id, revision)
    if _offline():
        return _from_cache(repo_id, folder, "offline mode is on (PORTHUB_OFFLINE or HF_HUB_OFFLINE)")
    client = sdk()
    if not _reachable(git_host()):
        return _from_cache(repo_id, folder, f"AI Studio ({git_host()}) could not be reached")
    token = resolve_token(token)
    os.makedirs(folder, exist_ok=True)
    try:
        config_path = _download(client, repo_id, CONFIG_NAME, revision, folder, token)
        config = read_config(config_path)
        names = _weight_names(config, f"AI Studio {repo_id}@{revision}")
        paths = {CONFIG_NAME: config_path}
        for name in names:
            path = _download(client, repo_id, name, revision, folder, token)
            _check(path, name, config, f"AI Studio {repo_id}@{revision}")
            paths[name] = path
    except _network_errors() as exc:
        raise HubUnreachableError(f"AI Studio stopped answering while downloading {repo_id} ({type(exc).__name__}); "
                                  "try again, or set PORTHUB_OFFLINE=1 to use the cache") from None
    finally:
        _wait_for_statistics()
    return Fetched(config, paths, f"AI Studio {repo_id}@{revision}", "aistudio", None, names)


def published_source_sha256(repo_id: str, token: str | None = None) -> str | None:
    """The source checkpoint's sha256 that the config.json of an AI Studio repository records, or None when
    AI Studio has no such repository or file (publish-zoo skips what is already there)."""
    client = sdk()
    if not _reachable(git_host()):
        raise HubUnreachableError(f"cannot reach AI Studio ({git_host()}); check the network and STUDIO_GIT_HOST")
    with tempfile.TemporaryDirectory(prefix="porthub-aistudio-zoo-") as tmp:
        try:
            path = _download(client, repo_id, CONFIG_NAME, DEFAULT_REVISION, tmp, resolve_token(token))
            config = read_config(path)
        except _network_errors() as exc:
            raise HubUnreachableError(f"AI Studio stopped answering ({type(exc).__name__}); try again") from None
        except HubError:
            return None
        finally:
            _wait_for_statistics()
    return str(config.get("source_checkpoint", {}).get("sha256") or "") or None


def pretrained_state(variant_name: str, framework: str, revision: str | None = None,
                     repo_id: str | None = None) -> Any:
    """The published weights of a registered variant from AI Studio, as a canonical state dict."""
    from .repo import default_repo_id, read_weights

    fetched = fetch(repo_id or default_repo_id(variant_name), (framework,), revision)
    if fetched.config.get("variant") != variant_name:
        raise HubError(f"{fetched.where} holds {fetched.config.get('variant')!r}, not {variant_name!r}; "
                       "pass the repository of this model")
    name = files_for(fetched.config, (PADDLE,))[0]
    return read_weights(fetched.paths[name], fetched.config, PADDLE)
