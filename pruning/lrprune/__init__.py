"""lrprune: ADMM structured pruning for PyTorch, exporting the sparsity
structure the lrc compiler consumes (see docs/pruning.md)."""

from .admm import ADMMPruner
from .config import PruneConfig, Rule
from .export import sparsity_of, structure_of
from .layers import prunable_layers
from .patterns import PatternLibrary
from .projections import KINDS, project, projection_mask
from .report import Report, build_report as report_of

__all__ = [
    "ADMMPruner",
    "KINDS",
    "PatternLibrary",
    "PruneConfig",
    "Report",
    "Rule",
    "project",
    "projection_mask",
    "prunable_layers",
    "report_of",
    "sparsity_of",
    "structure_of",
]
__version__ = "0.1.0"
