"""``publish-zoo``: every registered variant whose official file is available, fetched, converted,
verified (and evaluated when a validation folder is given) and published, for maintainers.

Idempotent: a repository whose ``config.json`` records the same source sha256 is skipped, so a second
run publishes nothing new (on AI Studio, the config.json of the repository there is read). Resumable:
each repository is published in one step (the local hub renames a finished folder into place; a Hub or
AI Studio upload is one commit), so a killed run leaves every repository either published or absent,
and the next run skips what is there and carries on. A variant with no file to be
had (manual-only sources, offline) is reported as unavailable, not as a failure.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from .errors import HubError, IntegrityError, PorthubError, SourceUnavailableError, UnknownModelError

__all__ = ["ZooEntry", "ZooReport", "publish_zoo", "zoo_variants", "published_sha256", "PUBLISHED", "SKIPPED",
           "UNAVAILABLE", "FAILED"]

PUBLISHED, SKIPPED, UNAVAILABLE, FAILED = "published", "skipped", "unavailable", "failed"

Progress = Callable[[str], None]


@dataclass
class ZooEntry:
    variant: str
    status: str
    detail: str = ""
    repo_id: str = ""
    sha256: str = ""
    evaluation: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "status": self.status, "detail": self.detail, "repo_id": self.repo_id,
                "sha256": self.sha256, "evaluation": self.evaluation}


@dataclass
class ZooReport:
    hub: str
    entries: list[ZooEntry] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(e.status == FAILED for e in self.entries)

    def count(self, status: str) -> int:
        return sum(e.status == status for e in self.entries)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "hub": self.hub, "entries": [e.as_dict() for e in self.entries],
                **{s: self.count(s) for s in (PUBLISHED, SKIPPED, UNAVAILABLE, FAILED)}}

    def table(self) -> str:
        width = max([len(e.variant) for e in self.entries] + [7])
        lines = [f"{'variant':<{width}}  {'status':<11}  detail", f"{'-' * width}  {'-' * 11}  ------"]
        for e in self.entries:
            lines.append(f"{e.variant:<{width}}  {e.status:<11}  {e.detail}")
        lines.append(f"{self.count(PUBLISHED)} published, {self.count(SKIPPED)} skipped (already there), "
                     f"{self.count(UNAVAILABLE)} unavailable, {self.count(FAILED)} failed, to {self.hub}")
        return "\n".join(lines)


def zoo_variants(only: Sequence[str] | None = None) -> list[str]:
    """Registered variants with a sources catalogue entry, in registry order, filtered by shell patterns."""
    from .registry import all_specs, normalise

    names = [v.name for spec in all_specs() for v in spec.variants if v.name in spec.sources]
    if only:
        pats = [normalise(p) for p in only]
        pats = [p if any(c in p for c in "*?[") else f"*{p}*" for p in pats]
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in pats)]
    return names


@contextlib.contextmanager
def _sources_env(folders: Sequence[str] | None) -> Iterator[None]:
    """PORTHUB_SOURCES with ``folders`` first, for the duration of the run."""
    if not folders:
        yield
        return
    for folder in folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"no such sources folder: {folder}")
    before = os.environ.get("PORTHUB_SOURCES")
    joined = os.pathsep.join(os.path.abspath(f) for f in folders)
    os.environ["PORTHUB_SOURCES"] = joined + (os.pathsep + before if before else "")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("PORTHUB_SOURCES", None)
        else:
            os.environ["PORTHUB_SOURCES"] = before


def _publish_module() -> Any:
    from .hub import publish

    return publish


def published_sha256(repo_id: str, kind: str, dest: str) -> str | None:
    """The source sha256 the repository's config.json records, or None when there is no such repository."""
    from .hub import CONFIG_NAME, local_repo_dir, read_config

    if kind == "local":
        path = os.path.join(local_repo_dir(repo_id, None, dest), CONFIG_NAME)
        if not os.path.isfile(path):
            return None
        try:
            return str(read_config(path).get("source_checkpoint", {}).get("sha256") or "") or None
        except HubError:
            return None  # damaged: publish it again
    if kind == "hf":
        from .hub.remote import endpoint_of, hf

        h = hf()
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = h.hf_hub_download(repo_id, CONFIG_NAME, endpoint=endpoint_of(dest or None), cache_dir=tmp)
            except (h.errors.RepositoryNotFoundError, h.errors.EntryNotFoundError, h.errors.RevisionNotFoundError):
                return None
            try:
                with open(path, encoding="utf-8") as fh:
                    config = json.load(fh)
            except (OSError, json.JSONDecodeError):
                return None
        return str(config.get("source_checkpoint", {}).get("sha256") or "") or None
    if kind == "aistudio":
        from .hub.aistudio import published_source_sha256

        return published_source_sha256(repo_id)
    raise HubError(f"publish-zoo publishes to the local hub, a folder, a Hugging Face Hub endpoint or AI Studio, "
                   f"not {kind!r}")


def _evaluate(variant: str, path: str, data: str) -> dict[str, Any]:
    from .evaluate import evaluate

    result = evaluate(variant, data, "both", weights=path, progress=False)
    return {k: result[k] for k in ("samples", "frameworks", "agreement_top1", "agreement_pixels") if k in result}


def _data_fits(task: str, data: str) -> bool:
    seg_layout = os.path.isdir(os.path.join(data, "images")) and os.path.isdir(os.path.join(data, "annotations"))
    return seg_layout if task == "segmentation" else not seg_layout


def publish_zoo(hub: str, sources: Sequence[str] | None = None, data: str | None = None,
                only: Sequence[str] | None = None, dtypes: Sequence[str] = ("float32", "float64"),
                say: Progress | None = None) -> ZooReport:
    """Publish every available official file to ``hub`` (``local``, a folder, ``hf``, a Hub URL or
    ``aistudio``); see the module docstring. Inputs are checked before any file is read."""
    from .hub import default_repo_id
    from .registry import resolve
    from .sources import fetch_official

    say = say or (lambda _msg: None)
    publish = _publish_module()
    kind, dest = publish.resolve_hub(hub)
    if kind not in ("local", "hf", "aistudio"):
        raise HubError(f"publish-zoo publishes to the local hub, a folder, a Hugging Face Hub endpoint or AI Studio, "
                       f"not {hub!r}")
    if data is not None and not os.path.isdir(data):
        raise FileNotFoundError(f"no such data folder: {data}")
    names = zoo_variants(only)
    if not names:
        raise UnknownModelError(f"no registered variant with an official source matches {', '.join(only or [])}")
    if kind == "aistudio":
        from .hub.aistudio import check_publishable

        # no token, no client or AI Studio not answering: one line before any file is read
        check_publishable(default_repo_id(names[0]))
    report = ZooReport(hub if hub not in ("", None) else "local")
    with _sources_env(sources):
        for name in names:
            repo_id = default_repo_id(name)
            entry = ZooEntry(name, FAILED, repo_id=repo_id)
            report.entries.append(entry)
            try:
                fetched = fetch_official(name, progress=False, say=say)
            except SourceUnavailableError as exc:
                entry.status, entry.detail = UNAVAILABLE, str(exc).split(" (tried:")[0]
                continue
            except (IntegrityError, OSError) as exc:
                entry.detail = str(exc).splitlines()[0]
                continue
            entry.sha256 = fetched.sha256
            try:
                if published_sha256(repo_id, kind, dest) == fetched.sha256:
                    entry.status, entry.detail = SKIPPED, f"{repo_id} already holds source sha256 {fetched.sha256[:12]}"
                    continue
                say(f"{name}: converting and verifying {os.path.basename(fetched.path)}")
                result = publish.push(name, fetched.path, repo_id, hub, dtypes=tuple(dtypes), progress=say,
                                      provenance=fetched.provenance)
                where = result.get("path") or result.get("endpoint") or hub
                entry.status, entry.detail = PUBLISHED, f"{repo_id} -> {where} ({fetched.provenance.get('kind', '?')})"
                if data is not None:
                    if _data_fits(resolve(name)[1].task, data):
                        entry.evaluation = _evaluate(name, fetched.path, data)
                        entry.detail += "; " + _summary(entry.evaluation)
                    else:
                        entry.detail += "; not evaluated (the data folder is for the other task)"
            except (PorthubError, OSError, ValueError, KeyError) as exc:
                # one variant's failure is reported in the table; the others are still published
                text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
                first = text.strip().splitlines()[0] if text.strip() else ""
                entry.status, entry.detail = FAILED, f"{type(exc).__name__}: {first}"
    return report


def _summary(evaluation: dict[str, Any]) -> str:
    parts = []
    for fw, r in evaluation.get("frameworks", {}).items():
        if "top1" in r:
            parts.append(f"{fw} top-1 {100 * r['top1']:.2f}%")
        else:
            parts.append(f"{fw} mIoU {100 * r['miou']:.2f}%")
    return ", ".join(parts) + f" on {evaluation.get('samples')} images"
