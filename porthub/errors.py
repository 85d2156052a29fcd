"""porthub's errors. Each subclasses the built-in type a caller would expect, and its message says
what was wrong and what to do next; the CLI prints it as one line."""

from __future__ import annotations

__all__ = [
    "PorthubError",
    "UnsafeCheckpointError",
    "CheckpointFormatError",
    "KeyMismatchError",
    "UnknownModelError",
    "LayoutError",
    "FrameworkMissingError",
    "HubError",
    "IntegrityError",
    "InputError",
    "CheckpointWriteError",
    "OutputExistsError",
    "ConversionError",
    "UnknownLayoutError",
    "OutputPathError",
    "ConfigFileError",
    "DeviceError",
]


class PorthubError(Exception):
    """Base class of every error porthub raises on purpose."""


class UnsafeCheckpointError(PorthubError, ValueError):
    """A checkpoint asks to run or import something outside the allow-list; nothing of it was executed."""


class CheckpointFormatError(PorthubError, ValueError):
    """A file is not a readable checkpoint of the claimed format (truncated, garbage, inconsistent)."""


class KeyMismatchError(PorthubError, KeyError):
    """A state dict does not have exactly the keys and shapes the model needs."""

    def __str__(self) -> str:  # KeyError quotes its argument; ours is a sentence
        return str(self.args[0]) if self.args else ""


class UnknownModelError(PorthubError, KeyError):
    """No registered variant or family has this name."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class InputError(PorthubError, ValueError):
    """An input a model cannot take (shape, channels, size or dtype); the message names the constraint."""


class LayoutError(PorthubError, ValueError):
    """A checkpoint matches none of the family's declared layouts."""


class FrameworkMissingError(PorthubError, ImportError):
    """The command needs torch or paddle and it is not installed."""


class UnknownFrameworkError(PorthubError, ValueError):
    """A framework name that is neither "torch" nor "paddle"."""


class ModelClassError(PorthubError, AttributeError):
    """A family's model module has no class of the name a spec or a config.json names."""


class NoSuchModuleError(PorthubError, KeyError):
    """A module path to take an output from (a feature, a hook) is not in the model."""


class ModelConfigError(PorthubError, ValueError):
    """A model's constructor arguments that its family's rules do not allow (a group type, a size)."""


class NonFiniteWeightsError(PorthubError, ValueError):
    """Weights holding NaN or infinity (a corrupt file or a diverged run)."""


class PreprocessError(PorthubError, ValueError):
    """An input image or array cannot be turned into a model input."""


class ReportError(PorthubError, ValueError):
    """The two models cannot be compared layer by layer (different call structure, bad report directory)."""


class SpecError(PorthubError, ValueError):
    """A family spec or catalogue entry that breaks porthub's rules (a bug in converters/, not in the input)."""


class ReferenceCaseError(PorthubError, ValueError):
    """A reference case (CASE.json and its files) that porthub cannot read or does not know."""


class MissingFileError(PorthubError, FileNotFoundError):
    """A file or folder the caller named does not exist."""


class HubError(PorthubError, OSError):
    """A hub repository cannot be found, read or written."""


class IntegrityError(HubError):
    """A downloaded or cached file does not have the sha256 its config records."""


class CheckpointWriteError(PorthubError, TypeError):
    """Weights cannot be written in the requested format (a dtype or object the format has no place for)."""


class OutputExistsError(PorthubError, FileExistsError):
    """The output file exists (or is the source itself); nothing was written."""


class ConversionError(PorthubError, ValueError):
    """A conversion request that cannot be carried out (target, format, layout or dtype do not go together)."""


class UnknownLayoutError(PorthubError, KeyError):
    """A family has no layout of this name; the message lists the known ones."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OutputPathError(PorthubError, FileNotFoundError):
    """The output's directory does not exist (porthub does not create it: a typo would go unnoticed)."""


class ConfigFileError(PorthubError, ValueError):
    """A JSON config or reference case that is not a JSON object."""


class DeviceError(PorthubError, ValueError):
    """A device name porthub does not know, or a GPU the installed framework cannot use (a CPU build, no
    GPU visible, an index past the last GPU); the message says what to install or use."""


class AIStudioTokenError(HubError, PermissionError):
    """AI Studio needs an access token and none was found, or the one given was refused."""


class ReadmeRejectedError(HubError):
    """AI Studio did not take the model card (its YAML front matter failed AI Studio's check)."""


class HubUnreachableError(HubError, ConnectionError):
    """A hub could not be reached (network down or wrong host) and no cached copy answers."""


class SourceUnavailableError(HubError, FileNotFoundError):
    """No catalogued location gave a variant's official file (offline, unreachable, or manual only); the
    message lists what was tried and the steps to provide the file by hand."""


class NotScriptableError(PorthubError, AttributeError):
    """torch.jit.script was asked to compile a porthub model, which TorchScript cannot express; the
    message names what works instead (torch.jit.trace, torch.compile). An AttributeError because
    TorchScript meets it while reading a hook's ``__name__``."""


class ExportError(PorthubError, ValueError):
    """An export that cannot be made as asked (an unknown format, an option the format lacks), or an
    exported folder that cannot be read back (no export.json, an unknown format in it)."""


class ExportVerificationError(ExportError):
    """An exported artefact, run by its own runtime, did not give the dynamic model's outputs within the
    declared tolerance; nothing was kept."""
