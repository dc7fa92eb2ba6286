"""kgopt's public names: what the top level exports, pinned, and each one the thing it names."""

import inspect
import subprocess
import sys

import kgopt

PUBLIC = {
    "__version__", "KgoptError", "DataError", "ConfigError", "EndpointError", "ArtifactError", "BudgetExceeded", "ExtractAborted",
    "UnknownTaskError", "load", "Extractor", "connect", "evaluate", "compile_program", "extract", "augment", "IEProgram",
    "load_program", "resolve_endpoint", "get_task", "TASKS",
}
VERBS = ("load", "connect", "evaluate", "compile_program", "extract", "augment")


def test_the_exported_names_are_pinned():
    assert set(kgopt.__all__) == PUBLIC and len(kgopt.__all__) == len(PUBLIC)


def test_every_exported_name_resolves():
    for name in kgopt.__all__:
        assert getattr(kgopt, name) is not None, name


def test_the_entry_points_are_functions_even_after_their_modules_are_imported():
    import kgopt.augmentation  # noqa: F401 - the modules are nouns, so importing them replaces nothing
    import kgopt.compiler  # noqa: F401
    import kgopt.evaluation  # noqa: F401
    import kgopt.extraction  # noqa: F401

    for name in VERBS:
        assert inspect.isfunction(getattr(kgopt, name)), name


def test_importing_kgopt_is_light():
    """The top level imports no DSPy: `import kgopt` (and the CLI's --help) stays fast."""
    code = "import sys, kgopt; print('dspy' in sys.modules, 'optuna' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]
