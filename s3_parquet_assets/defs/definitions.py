"""The code location: the defs folder, loaded as ``dg`` loads it (``defs.yaml`` -> the component).

``dg dev`` / ``dg check defs`` find it through ``[tool.dg]`` in pyproject.toml; ``dagster dev`` and
``dagster definitions validate`` through ``workspace.yaml`` / ``[tool.dagster]``. Nothing is read at
import: the tables file is read when the definitions load.
"""

from __future__ import annotations

from pathlib import Path

from dagster import Definitions, definitions, load_from_defs_folder

__all__ = ["defs"]


@definitions
def defs() -> Definitions:
    return load_from_defs_folder(path_within_project=Path(__file__).parent)
