"""Stage interface and registry."""

from farmplug.stages.base import ProcessInfo, Stage, StageDescriptor
from farmplug.stages.registry import available_stages, create_stage

__all__ = ["ProcessInfo", "Stage", "StageDescriptor", "available_stages", "create_stage"]
