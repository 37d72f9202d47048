"""Per-document stages, one module each. `STAGES` maps the names a config may list to their classes.

Importing this package is cheap: heavy libraries are imported when a stage is built, not here.
"""

from stages.base import Stage, StageConfig
from stages.extract import Extract

STAGES: dict[str, type[Stage]] = {stage.name: stage for stage in (Extract,)}

__all__ = ["STAGES", "Stage", "StageConfig"]
