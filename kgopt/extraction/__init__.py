"""Knowledge-graph construction over documents: ``kgopt extract``."""

from kgopt.extraction.job import ExtractAborted, ExtractOptions, ExtractReport, extract, plan_programs, run_extract

__all__ = ["ExtractAborted", "ExtractOptions", "ExtractReport", "extract", "plan_programs", "run_extract"]
