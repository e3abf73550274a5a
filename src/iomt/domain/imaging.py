"""Imaging modalities and the tasks the vision models solve."""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """Imaging modality of a study (DICOM modality codes where one exists)."""

    XRAY = "CR"  # computed/digital radiography (DICOM CR/DX)
    CT = "CT"
    ULTRASOUND = "US"
    MICROSCOPY = "SM"  # slide microscopy: blood smears from an IoT microscope

    @classmethod
    def parse(cls, text: str) -> Modality:
        """Parse a DICOM modality code or a common name ("xray", "DX", "ct", "us", "smear")."""
        key = text.strip().upper()
        aliases = {
            "DX": cls.XRAY,
            "CR": cls.XRAY,
            "XRAY": cls.XRAY,
            "X-RAY": cls.XRAY,
            "CT": cls.CT,
            "US": cls.ULTRASOUND,
            "ULTRASOUND": cls.ULTRASOUND,
            "SM": cls.MICROSCOPY,
            "SMEAR": cls.MICROSCOPY,
            "MICROSCOPY": cls.MICROSCOPY,
            "GM": cls.MICROSCOPY,
        }
        try:
            return aliases[key]
        except KeyError:
            raise ValueError(f"unknown modality {text!r}; use one of {sorted(aliases)}") from None
