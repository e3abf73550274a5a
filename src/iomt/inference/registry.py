"""The model registry as data: every ``<models_dir>/<id>/card.json`` with its ONNX file(s).

Scanning validates the cards only (fast, no model is opened). The ONNX file's sha256 is
checked against the card when a model is loaded (:meth:`RegisteredModel.verified_path`), so a
corrupt or swapped file fails loudly instead of producing wrong findings.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import iomt
from iomt.config import Settings
from iomt.domain.imaging import Modality
from iomt.errors import ModelError, NotFound
from iomt.inference.card import ModelCard, read_card

log = logging.getLogger(__name__)

CARD_NAME = "card.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_models_dir(settings: Settings | None = None) -> Path | None:
    """Where the shipped models live.

    Order: ``settings.models_dir`` (env ``IOMT_MODELS_DIR``), then ``IOMT_MODELS_DIR`` itself
    (for callers without settings), then a ``models/`` folder next to the package's source tree
    (editable installs and checkouts: ``<repo>/src/iomt`` -> ``<repo>/models``), then
    ``./models``. Returns None where none exists.
    """
    if settings is not None and settings.models_dir is not None:
        return settings.models_dir
    env = os.environ.get("IOMT_MODELS_DIR")
    if env:
        return Path(env)
    package_dir = Path(iomt.__file__).resolve().parent
    candidates = [package_dir.parent.parent / "models", Path.cwd() / "models"]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return None


@dataclass(frozen=True)
class RegisteredModel:
    """A validated card and the folder holding its files."""

    card: ModelCard
    directory: Path

    @property
    def id(self) -> str:
        """The model id (``card.id``)."""
        return self.card.id

    def file_path(self, variant: str | None = None) -> Path:
        """Path of the fp32 file, or of the named variant (e.g. ``"int8"``)."""
        if variant is None:
            return self.directory / self.card.file
        try:
            return self.directory / self.card.variants[variant].file
        except KeyError:
            known = sorted(self.card.variants)
            raise ModelError(f"model {self.id} has no variant {variant!r}; has {known}") from None

    def expected_sha256(self, variant: str | None = None) -> str:
        """The checksum the card records for the file (or variant)."""
        if variant is None:
            return self.card.sha256
        self.file_path(variant)  # raises for an unknown variant
        return self.card.variants[variant].sha256

    def verified_path(self, variant: str | None = None) -> Path:
        """The file's path after checking that it exists and matches the card's sha256.

        Raises
        ------
        ModelError
            If the file is missing or its sha256 differs from the card.
        """
        path = self.file_path(variant)
        if not path.is_file():
            raise ModelError(f"model {self.id}: file {path} is missing")
        actual = sha256_file(path)
        expected = self.expected_sha256(variant)
        if actual != expected:
            raise ModelError(
                f"model {self.id}: sha256 of {path.name} is {actual}, the card says {expected}"
            )
        return path

    def serving_variant(self) -> str | None:
        """The variant the service should run (one marked ``use``), or None for fp32."""
        for name, variant in sorted(self.card.variants.items()):
            if variant.use:
                return name
        return None


def load_model_dir(directory: Path) -> RegisteredModel:
    """Read one model folder (``<dir>/card.json``); raises ModelError if the card is bad."""
    return RegisteredModel(card=read_card(directory / CARD_NAME), directory=directory)


class ModelRegistry:
    """The registered models, by id. Build it with :meth:`scan` or from entries."""

    def __init__(self, models: Iterable[RegisteredModel] = ()) -> None:
        self._models: dict[str, RegisteredModel] = {}
        for model in models:
            if model.id in self._models:
                other = self._models[model.id].directory
                raise ModelError(
                    f"model id {model.id!r} registered twice: {other}, {model.directory}"
                )
            self._models[model.id] = model

    @classmethod
    def scan(cls, directory: Path | None) -> ModelRegistry:
        """Load every ``*/card.json`` under ``directory`` (an absent directory gives none).

        Raises
        ------
        ModelError
            If a card does not validate or two cards share an id.
        """
        if directory is None or not directory.is_dir():
            log.debug("no models directory at %s", directory)
            return cls()
        return cls(load_model_dir(card.parent) for card in sorted(directory.glob(f"*/{CARD_NAME}")))

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> ModelRegistry:
        """Scan the models directory the settings resolve to."""
        return cls.scan(resolve_models_dir(settings))

    def __iter__(self) -> Iterator[RegisteredModel]:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def get(self, model_id: str) -> RegisteredModel:
        """The model with this id; raises NotFound naming the known ids."""
        try:
            return self._models[model_id]
        except KeyError:
            raise NotFound(f"no model {model_id!r}; registered: {sorted(self._models)}") from None

    def find(
        self,
        *,
        task: str | None = None,
        modality: Modality | None = None,
        kind: str | None = None,
    ) -> list[RegisteredModel]:
        """Models matching every given filter, sorted by id."""
        return [
            model
            for _, model in sorted(self._models.items())
            if (task is None or model.card.task == task)
            and (modality is None or model.card.modality == modality)
            and (kind is None or model.card.kind == kind)
        ]

    def resolve(self, id_or_path: str) -> RegisteredModel:
        """A registered id, or a path to a model folder, its ``card.json`` or its ONNX file."""
        if id_or_path in self._models:
            return self._models[id_or_path]
        path = Path(id_or_path)
        if path.is_file():
            path = path.parent
        if (path / CARD_NAME).is_file():
            return load_model_dir(path)
        raise NotFound(
            f"{id_or_path!r} is neither a registered model ({sorted(self._models)}) "
            f"nor a folder with {CARD_NAME}"
        )
