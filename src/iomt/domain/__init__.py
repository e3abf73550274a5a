"""Pure typed values shared by every layer: vitals and units, triage levels, modalities."""
