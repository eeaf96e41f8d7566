"""Architecture search: neuro-evolution of line-format chains and of MDL graphs.

search.py runs the generations (selection, budgets, parallel evaluation,
the lineage); graphs.py mutates MDL graph genomes over every construct of
the language and maps a child's nodes to its parent's for weight
inheritance.
"""

from .search import (COLUMNS, EvolveConfig, Genome, Stopped, evaluate_all, evolve, format_row, inherit, mutate,
                     write_best)

__all__ = ["COLUMNS", "EvolveConfig", "Genome", "Stopped", "evaluate_all", "evolve", "format_row", "inherit", "mutate",
           "write_best"]
