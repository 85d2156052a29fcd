"""The official checkpoints: finding, downloading and checking them, then installing them as hub repositories.

Where a variant's official file is looked for, in order:

1. ``PORTHUB_SOURCES``: one or more folders (``os.pathsep``-separated) holding files under their
   official names (the user's manual downloads). Used in place, never copied or removed.
2. porthub's own cache of earlier downloads (``$PORTHUB_HOME/sources/<variant>/<location id>/``: keyed
   by the location, never by the file name alone, since projects reuse names for different files).
3. The network, location by location as the catalogue lists them: direct URLs (resumable; with
   ``PORTHUB_SOURCE_MIRROR=BASE`` ``https://HOST/PATH`` is fetched as ``BASE/HOST/PATH``), Google Drive
   files through ``gdown`` (``pip install 'porthub[gdrive]'``), Hub-hosted copies through huggingface_hub.
   Baidu Pan shares and Drive folders need a person: their exact steps are printed in the error.
   ``PORTHUB_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` skips this step.

A file whose catalogue entry has a sha256 must match it: a download that does not is refused and
removed (a file in the user's own folder is refused and left alone). A file with no published sha256 is
used *unpinned*: its sha256 is recorded and reported as such.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

from ..catalogue import Location, Release, SourceKind, provenance
from ..errors import (
    FrameworkMissingError,
    HubError,
    InputError,
    IntegrityError,
    SourceUnavailableError,
    UnknownModelError,
)
from .http import download, mirror_url

__all__ = ["FetchedSource", "catalogue", "fetch_official", "install", "install_details", "pretrained_from_official",
           "source_folders", "offline", "mirror_url", "cache_root", "SOURCE_KINDS"]

#: what ``source=`` may name: where to look (``local`` = the PORTHUB_SOURCES folders and porthub's cache)
SOURCE_KINDS = ("local", *(kind.value for kind in SourceKind))

Progress = Callable[[str], None]


@dataclass(frozen=True)
class FetchedSource:
    """An official file on this machine.

    ``pinned`` is True when its sha256 is the one the catalogue records; ``source`` says where it came
    from (a folder, the cache, a URL); ``location`` is the catalogue location it was downloaded from
    (None for a user's folder); ``provenance`` is what a repository built from it may claim."""

    path: str
    sha256: str
    pinned: bool
    source: str
    variant: str = ""
    location: Location | None = None
    provenance: dict[str, Any] = field(default_factory=dict)


def catalogue(variant_name: str) -> Release:
    """The sources catalogue entry (:class:`porthub.catalogue.Release`) of a registered variant (or alias):
    official file name, wrapping, locations, size/sha256 where known, licence, reported accuracy."""
    from ..registry import resolve

    spec, variant = resolve(variant_name)
    release = spec.sources.get(variant.name)
    if release is None:
        raise UnknownModelError(f"{variant.name} has no entry in the {spec.family} sources catalogue: no official "
                                "checkpoint is known for it; convert your own file with push")
    return release


def offline() -> bool:
    """PORTHUB_OFFLINE or HF_HUB_OFFLINE set to a true value: no network step is taken."""
    return any(os.environ.get(k, "").strip().lower() in ("1", "true", "yes", "on")
               for k in ("PORTHUB_OFFLINE", "HF_HUB_OFFLINE"))


def source_folders() -> list[str]:
    """The PORTHUB_SOURCES folders, in order."""
    raw = os.environ.get("PORTHUB_SOURCES", "")
    return [os.path.abspath(os.path.expanduser(p)) for p in raw.split(os.pathsep) if p.strip()]


def cache_root(dest_dir: str | None = None) -> str:
    if dest_dir:
        return os.path.abspath(os.path.expanduser(dest_dir))
    from ..hub.local import hub_home

    return os.path.join(hub_home(), "sources")


def _sha256(path: str) -> str:
    from ..hub.repo import sha256_file

    return sha256_file(path)


def _check_kinds(source: str | Sequence[str] | None) -> tuple[str, ...]:
    kinds = SOURCE_KINDS if source is None else ((source,) if isinstance(source, str) else tuple(source))
    bad = [k for k in kinds if k not in SOURCE_KINDS]
    if bad:
        raise InputError(f"source {bad[0]!r} is not one of {', '.join(SOURCE_KINDS)}")
    return kinds


def _from_folders(variant: str, release: Release) -> FetchedSource | None:
    for folder in source_folders():
        for name in (release.file_name, *release.also_named):
            path = os.path.join(folder, name)
            if not os.path.isfile(path):
                continue
            sha = _sha256(path)
            want = release.sha256
            if want and sha != want:
                raise IntegrityError(f"{path} has sha256 {sha[:16]}..., but the official {release.file_name} has "
                                     f"{want[:16]}...; refusing it (the file was left where it is: replace it with the "
                                     "official download, or push it as your own checkpoint)")
            pinned = bool(want)
            return FetchedSource(path, sha, pinned, f"PORTHUB_SOURCES folder {folder}", variant, None,
                                 provenance(release, sha, None))
    return None


def _cache_dir(root: str, variant: str, loc: Location) -> str:
    return os.path.join(root, variant, loc.key)


def _record_path(path: str) -> str:
    return path + ".porthub.json"


def _cached(root: str, variant: str, release: Release, locations: Sequence[Location]) -> FetchedSource | None:
    """A complete earlier download (its record written after its sha256 was checked and stored)."""
    for loc in locations:
        path = os.path.join(_cache_dir(root, variant, loc), loc.filename or release.file_name)
        record = _record_path(path)
        if not (os.path.isfile(path) and os.path.isfile(record)):
            continue
        try:
            with open(record, encoding="utf-8") as fh:
                info = json.load(fh)
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(info, dict) or info.get("size") != os.path.getsize(path):
            continue
        want = release.expected_sha256(loc)
        sha = str(info.get("sha256", ""))
        if want and sha != want:
            continue
        return FetchedSource(path, sha, bool(want), f"porthub's cache of {loc.describe()}", variant, loc,
                             provenance(release, sha, loc))
    return None


def _fetch_location(loc: Location, path: str, release: Release, progress: bool) -> str:
    """Bring the file of one network location to ``path`` (or return where huggingface_hub keeps it)."""
    if loc.kind is SourceKind.URL:
        size = loc.size if (loc.size or not loc.copy_of_original) else release.size
        return download(mirror_url(loc.where), path, size, progress)
    if loc.kind is SourceKind.GDRIVE:
        from .gdrive import gdrive_download

        return gdrive_download(loc.where, path, progress)
    if loc.kind is SourceKind.HF:
        from .hfhub import hf_file

        return hf_file(loc.where, loc.filename)
    raise SourceUnavailableError(f"{loc.describe()} needs a person")  # manual kinds are filtered out before


def _download_one(root: str, variant: str, release: Release, loc: Location, progress: bool,
                  say: Progress, force: bool = False) -> FetchedSource:
    folder = _cache_dir(root, variant, loc)
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, loc.filename or release.file_name)
    with _exclusive(path + ".lock"):
        # another process may have finished this download while this one waited for the lock
        done = None if force else _cached(root, variant, release, [loc])
        if done is not None:
            return done
        return _download_locked(root, variant, release, loc, path, progress, say)


@contextlib.contextmanager
def _exclusive(lock_path: str) -> Iterator[None]:
    """One downloader per cached file at a time (two would append to one ``.part``); the OS drops the lock
    when its process dies, so a killed download never blocks the next one."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; concurrent downloads of one file are the user's to avoid
        yield
        return
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _download_locked(root: str, variant: str, release: Release, loc: Location, path: str, progress: bool,
                     say: Progress) -> FetchedSource:
    say(f"downloading {release.file_name} of {variant} from {loc.describe()}")
    got = _fetch_location(loc, path, release, progress)
    sha = _sha256(got)
    want = release.expected_sha256(loc)
    if want and sha != want:
        if loc.kind is SourceKind.HF:
            from .hfhub import evict

            evict(got)
        else:
            os.remove(got)
        raise IntegrityError(f"{loc.describe()} gave a file with sha256 {sha[:16]}..., but the sources catalogue has "
                             f"{want[:16]}... for it; the file was refused and removed")
    from ..io import atomic_write

    with atomic_write(_record_path(path)) as fh:
        fh.write(json.dumps({"variant": variant, "location": loc.describe(), "file": os.path.abspath(got),
                             "sha256": sha, "size": os.path.getsize(got), "pinned": bool(want)}, indent=1).encode())
    # Hub copies stay in huggingface_hub's cache (it re-uses them); the record says where they are
    return FetchedSource(got, sha, bool(want), loc.describe(), variant, loc, provenance(release, sha, loc))


def _manual_help(variant: str, release: Release) -> str:
    steps = release.manual_steps()
    folders = source_folders()
    where = (f"into one of the PORTHUB_SOURCES folders ({os.pathsep.join(folders)})" if folders
             else "into a folder and point PORTHUB_SOURCES at it")
    notes = "".join(f" Note: {n}." for n in release.notes)
    return (f"To provide {variant}'s official file by hand: " + "; or ".join(steps) + f"; put {release.file_name} "
            f"{where}.{notes}")


def fetch_official(variant_name: str, dest_dir: str | None = None, progress: bool = True,
                   source: str | Sequence[str] | None = None, force: bool = False,
                   say: Progress | None = None) -> FetchedSource:
    """The official checkpoint of ``variant_name`` on this machine, checked against the catalogue.

    Looks in the PORTHUB_SOURCES folders, then porthub's cache of earlier downloads (under ``dest_dir``,
    default ``$PORTHUB_HOME/sources``), then downloads from the catalogued locations (unless offline).
    ``source`` limits where to look (``"local"``, ``"url"``, ``"gdrive"``, ``"hf"``, ``"baidu"``, or a
    list of them); ``force`` downloads again even when a cached copy exists. Returns a
    :class:`FetchedSource` whose ``pinned`` says whether the sha256 was checked against a published one.

    Raises IntegrityError for a file whose sha256 differs from the catalogue's (downloads are removed),
    and SourceUnavailableError, listing what was tried and the manual steps, when no location gave it.
    """
    from ..registry import resolve

    say = say or (lambda _msg: None)
    variant = resolve(variant_name)[1].name
    release = catalogue(variant)
    kinds = _check_kinds(source)
    root = cache_root(dest_dir)
    tried: list[str] = []
    if "local" in kinds:
        found = _from_folders(variant, release)
        if found is not None:
            return found
        tried.append("PORTHUB_SOURCES folders " + (os.pathsep.join(source_folders()) or "(PORTHUB_SOURCES is not set)"))
    network = [loc for loc in release.locations if loc.kind.value in kinds and not loc.manual]
    if not force:
        found = _cached(root, variant, release, network)
        if found is not None:
            return found
    if offline():
        tried.append("the network: skipped (PORTHUB_OFFLINE or HF_HUB_OFFLINE is set)")
        network = []
    for loc in network:
        try:
            return _download_one(root, variant, release, loc, progress, say, force)
        except (SourceUnavailableError, FrameworkMissingError) as exc:
            # an optional client missing (gdown, huggingface_hub) only rules out its own locations
            tried.append(f"{loc.describe()}: {exc}")
    for loc in release.locations:
        if loc.manual and loc.kind.value in kinds:
            tried.append(f"{loc.describe()}: needs a person")
    attempts = "; ".join(tried) or "nothing"
    raise SourceUnavailableError(f"no official file for {variant} could be had (tried: {attempts}). "
                                 + _manual_help(variant, release))


def install(variant_name: str, hub: str | None = None, source: str | Sequence[str] | None = None, force: bool = False,
            progress: bool = True, dtypes: Sequence[str] = ("float32", "float64"), repo_id: str | None = None,
            dest_dir: str | None = None, say: Progress | None = None) -> str:
    """Fetch the official file, convert it, verify it (both frameworks against the file's own weights run
    in PyTorch), and publish it as ``porthub/<variant>`` (``hub``: the local hub by default, a folder,
    ``hf`` or a Hub URL). Returns the repository folder (local hub or folder), else ``<endpoint>/<repo_id>``.
    A local repository already built from a file with the same sha256 is kept unless ``force``.
    :func:`install_details` takes the same arguments and says more."""
    result = install_details(variant_name, hub, source, force, progress, dtypes, repo_id, dest_dir, say)
    return str(result.get("path") or f"{result.get('endpoint', '')}/{result['repo_id']}")


def install_details(variant_name: str, hub: str | None = None, source: str | Sequence[str] | None = None,
                    force: bool = False, progress: bool = True, dtypes: Sequence[str] = ("float32", "float64"),
                    repo_id: str | None = None, dest_dir: str | None = None,
                    say: Progress | None = None) -> dict[str, Any]:
    """:func:`install`, returning push's summary (``repo_id``, ``hub``, ``files``, ``equivalence``,
    ``provenance``) plus ``source`` (the :class:`FetchedSource`), ``path`` (the repository folder, for a
    local hub) and ``skipped`` (True when the repository already held this file)."""
    from ..hub.local import local_repo_dir
    from ..hub.repo import CONFIG_NAME, default_repo_id, read_config

    say = say or (lambda _msg: None)
    fetched = fetch_official(variant_name, dest_dir, progress, source, force, say)
    variant = fetched.variant
    repo_id = repo_id or default_repo_id(variant)
    publish = _publish_module()
    kind, dest = publish.resolve_hub(hub)
    if kind == "local" and not force:
        folder = local_repo_dir(repo_id, None, dest)
        config_path = os.path.join(folder, CONFIG_NAME)
        if os.path.isfile(config_path):
            with contextlib.suppress(HubError):
                config = read_config(config_path)
                same = config.get("source_checkpoint", {}).get("sha256") == fetched.sha256
                if same and config.get("variant") == variant:
                    return {"repo_id": repo_id, "hub": "local", "path": folder, "model": variant, "skipped": True,
                            "source": fetched}
    result = publish.push(variant, fetched.path, repo_id, hub, dtypes=dtypes, progress=say,
                          provenance=fetched.provenance)
    result.update({"source": fetched, "skipped": False})
    return result


def _publish_module() -> Any:
    from ..hub import publish

    return publish



def pretrained_from_official(variant_name: str, framework: str, tried: Sequence[str] = ()) -> Any:
    """The last step of the pretrained lookup: install the official file in the local hub (fetched,
    converted, verified in float32 in both frameworks) and return its weights for ``framework`` as a
    canonical state. ``tried`` are the hubs already asked; when this step fails too, the one error
    lists them, what this step tried, and the manual steps."""
    from ..hub.local import fetch_folder
    from ..hub.repo import files_for, read_weights

    tried = list(tried)
    try:
        path = install(variant_name, dtypes=("float32",))
    except SourceUnavailableError as exc:
        steps = " | ".join([*tried, f"official source: {exc}"])
        raise SourceUnavailableError(f"no weights for {variant_name}: {steps}") from None
    except UnknownModelError as exc:
        raise HubError(f"no weights for {variant_name}: " + " | ".join([*tried, str(exc)])) from None
    fetched = fetch_folder(path, (framework,), path)
    name = files_for(fetched.config, (framework,))[0]
    return read_weights(fetched.paths[name], fetched.config, framework)
