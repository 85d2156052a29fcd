"""The sources catalogue: where the authors released each variant's checkpoint, as data.

Every family's spec (``converters/<family>.py``) lists, per released variant, a :class:`Release`: the
official file name, how the file wraps its weights, the locations it can be had from (direct URLs,
Google Drive ids, Baidu Pan links with their extraction codes, Hub-hosted copies), its size and sha256
where known, the licence and the accuracy the authors report with its source. Facts that could not be
read in an official source are listed in ``unverified`` instead of being stated as facts; a sha256 is
never guessed.

The downloading code lives in :mod:`porthub.sources`; this module is pure data (L0) so that specs and
model cards can use it.
"""

from __future__ import annotations

import enum
import hashlib
import re
from dataclasses import dataclass
from typing import Any, Mapping

__all__ = ["Wrapping", "SourceKind", "Location", "Accuracy", "Release", "provenance", "shared_locations",
           "OFFICIAL", "OFFICIAL_SOURCE", "USER"]

_SHA256 = re.compile(r"[0-9a-f]{64}")

#: provenance labels a repository's config and card carry
OFFICIAL = "official"                 # the file's sha256 is the one the catalogue records
OFFICIAL_SOURCE = "official-source"   # downloaded from a catalogued location, no published sha256 to check
USER = "user"                         # anything else: the user's own checkpoint


class Wrapping(str, enum.Enum):
    """How a released file holds the state dict."""

    BARE = "bare"                 # the state dict itself
    MODEL = "model"               # {"model": state_dict, ...} (Swin/DeiT-style training save)
    TIMM_TRAIN = "timm-train"     # timm CheckpointSaver: {"state_dict", "state_dict_ema", "optimizer", ...}
    MMCV = "mmcv"                 # mmcv runner: {"meta", "state_dict" (backbone./decode_head.), "optimizer"}
    SAFETENSORS = "safetensors"   # a safetensors file (Hub copies)


class SourceKind(str, enum.Enum):
    URL = "url"          # a direct https download (resumable)
    GDRIVE = "gdrive"    # a Google Drive file id (through gdown) or folder (manual)
    BAIDU = "baidu"      # a Baidu Pan share: manual only (needs a browser and the extraction code)
    HF = "hf"            # a file in a Hugging Face Hub repository (through huggingface_hub)


@dataclass(frozen=True)
class Location:
    """One place a released file can be had from.

    ``where`` is the URL (URL, BAIDU, GDRIVE folder), the Drive file id (GDRIVE) or the repository id
    (HF, with ``filename``). A location that holds a different file than the authors' original (a
    re-save such as timm's Hub copies) says so with ``copy_of_original=False`` and carries its own
    ``sha256``/``size``/``wrapping``."""

    kind: SourceKind
    where: str
    filename: str = ""
    code: str = ""
    folder: bool = False
    copy_of_original: bool = True
    sha256: str = ""
    size: int | None = None
    wrapping: Wrapping | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if self.sha256 and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"location {self.where!r}: sha256 must be 64 lowercase hex digits, not {self.sha256!r}")

    @property
    def manual(self) -> bool:
        """Whether a person has to fetch it (Baidu Pan, a Drive folder to pick the file from)."""
        return self.kind is SourceKind.BAIDU or self.folder

    @property
    def key(self) -> str:
        """A stable id of this location (the cache folder name): never the file name alone, since
        one project can release different files under the same name."""
        raw = f"{self.kind.value}|{self.where}|{self.filename}"
        return f"{self.kind.value}-{hashlib.sha256(raw.encode('utf-8')).hexdigest()[:12]}"

    def describe(self) -> str:
        if self.kind is SourceKind.HF:
            return f"Hugging Face Hub {self.where}/{self.filename}"
        if self.kind is SourceKind.GDRIVE:
            return (f"Google Drive folder https://drive.google.com/drive/folders/{self.where}" if self.folder
                    else f"Google Drive file {self.where} (https://drive.google.com/file/d/{self.where}/view)")
        if self.kind is SourceKind.BAIDU:
            return f"Baidu Pan {self.where}" + (f" (extraction code {self.code})" if self.code else "")
        return self.where


@dataclass(frozen=True)
class Accuracy:
    """A result the authors report: ``metric`` is ``top1`` (percent) or ``miou`` (percent)."""

    metric: str
    value: float
    dataset: str
    source: str
    protocol: str = ""


@dataclass(frozen=True)
class Release:
    """The official checkpoint of one variant."""

    file_name: str
    wrapping: Wrapping
    locations: tuple[Location, ...]
    licence: str
    accuracy: Accuracy | None = None
    #: sha256 and size of the authors' original file (empty / None: not published)
    sha256: str = ""
    size: int | None = None
    #: other names the same file is known under (looked for in PORTHUB_SOURCES folders too)
    also_named: tuple[str, ...] = ()
    #: facts read in an official source, each with where (repo @ commit, file)
    verified: tuple[str, ...] = ()
    #: facts that are inferred or could not be checked against an official source
    unverified: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.sha256 and not _SHA256.fullmatch(self.sha256):
            raise ValueError(f"release {self.file_name!r}: sha256 must be 64 lowercase hex digits, not {self.sha256!r}")
        if "/" in self.file_name or "\\" in self.file_name or self.file_name in ("", ".", ".."):
            raise ValueError(f"release file name {self.file_name!r} must be a plain file name")

    def expected_sha256(self, location: Location | None) -> str:
        """The sha256 the file from ``location`` must have ("" when nothing is published);
        ``None`` means a file under the official name in a user's folder."""
        if location is not None and (location.sha256 or not location.copy_of_original):
            return location.sha256
        return self.sha256

    def known_sha256(self) -> set[str]:
        return {s for s in (self.sha256, *(loc.sha256 for loc in self.locations)) if s}

    def manual_steps(self) -> list[str]:
        """What a person does to provide the file by hand, one line per location."""
        steps = []
        for loc in self.locations:
            name = loc.filename or self.file_name
            if loc.kind is SourceKind.BAIDU:
                code = f", enter the extraction code {loc.code}" if loc.code else ""
                steps.append(f"open {loc.where} in a browser{code}, download the file and save it as {self.file_name}")
            elif loc.kind is SourceKind.GDRIVE:
                what = f"https://drive.google.com/drive/folders/{loc.where}" if loc.folder else f"https://drive.google.com/file/d/{loc.where}/view"
                steps.append(f"open {what} in a browser, download {name} and save it as {self.file_name}")
            elif loc.kind is SourceKind.HF:
                steps.append(f"download {loc.filename} from https://huggingface.co/{loc.where} "
                             f"(a re-save, not the authors' {self.file_name}; keep its own name)")
            else:
                steps.append(f"download {loc.where} and save it as {self.file_name}")
        return steps


def provenance(release: Release | None, sha256: str, from_location: Location | None = None) -> dict[str, Any]:
    """What a published repository may claim about its source file.

    ``official`` when the sha256 is one the catalogue records; ``official-source`` when the file was
    downloaded from a catalogued location that publishes no sha256 (the file is what that location
    served); ``user`` otherwise: the card then does not quote the authors' accuracy as its own."""
    if release is not None and sha256 in release.known_sha256():
        kind, why = OFFICIAL, "its sha256 is the one the sources catalogue records"
    elif release is not None and from_location is not None and from_location in release.locations:
        kind, why = OFFICIAL_SOURCE, (f"downloaded from the catalogued location {from_location.describe()}, "
                                      "which publishes no sha256 (recorded here, unpinned)")
    else:
        kind, why = USER, ("its sha256 is not in the sources catalogue and it did not come from a catalogued "
                           "location: the user's own checkpoint")
    out: dict[str, Any] = {"kind": kind, "why": why, "sha256": sha256, "pinned": kind == OFFICIAL}
    if release is not None:
        out["official_file"] = release.file_name
    if from_location is not None:
        out["location"] = from_location.describe()
        out["copy_of_original"] = from_location.copy_of_original
    return out


def shared_locations(releases: Mapping[str, Release]) -> dict[str, list[str]]:
    """Locations catalogued for more than one variant (a README that links two models to one file):
    location description -> the variants it is listed for."""
    seen: dict[str, list[str]] = {}
    for name, release in releases.items():
        for loc in release.locations:
            seen.setdefault(loc.describe(), []).append(name)
    return {where: names for where, names in seen.items() if len(set(names)) > 1}
