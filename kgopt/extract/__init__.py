"""Knowledge-graph construction over documents: ``kgopt extract``."""

from kgopt.extract.job import ExtractAborted, ExtractReport, extract, plan_programs

__all__ = ["ExtractAborted", "ExtractReport", "extract", "plan_programs"]
