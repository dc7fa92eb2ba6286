"""Knowledge-graph construction over documents: ``kgopt extract``."""

from kgopt.extract.job import ExtractAborted, ExtractOptions, ExtractReport, extract, plan_programs, run_extract

__all__ = ["ExtractAborted", "ExtractOptions", "ExtractReport", "extract", "plan_programs", "run_extract"]
