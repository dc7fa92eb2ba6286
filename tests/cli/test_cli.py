"""The command line as a thin layer: every command answers --help, and the one error decorator
turns errors into one `error:` line and an exit status, and Ctrl-C into 130."""

import pytest
from typer.testing import CliRunner

from kgopt.cli.main import app

COMMANDS = ["score", "evaluate", "augment", "compile", "regress", "dashboard", "extract", "graph-stats", "graph-load", "graph-view", "tasks"]


def _run(*args):
    return CliRunner().invoke(app, list(args))


def test_the_command_table_is_what_the_app_serves():
    served = sorted(c.name or c.callback.__name__ for c in app.registered_commands)
    assert served == sorted(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_every_command_answers_help_with_its_summary(name):
    res = _run(name, "--help")
    assert res.exit_code == 0, res.output
    summary = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == name).callback.__doc__.strip().splitlines()[0]
    assert summary.split(":")[0][:30] in " ".join(res.output.split())


def test_a_kgopt_error_is_one_error_line_and_exit_2(tmp_path):
    res = _run("score", "--task", "NER", "--input", str(tmp_path / "missing.jsonl"))
    assert res.exit_code == 2
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.jsonl" in lines[0]


def test_ctrl_c_exits_130_saying_what_was_kept(monkeypatch, tmp_path):
    import kgopt.cli.main as cli

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_connect", interrupted)
    monkeypatch.setattr(cli, "_interruptible", lambda: None)  # the runner's thread keeps its own signal handlers
    res = _run("evaluate", "--task", "NER", "--lang", "en", "--out", str(tmp_path))
    assert res.exit_code == 130
    assert "interrupted: records finished so far are in predictions.partial.jsonl" in res.output


def test_an_assertion_error_that_is_not_an_interrupt_is_not_hidden(monkeypatch, tmp_path):
    import kgopt.cli.main as cli

    def broken(*args, **kwargs):
        raise AssertionError("a real bug")

    monkeypatch.setattr(cli, "_connect", broken)
    monkeypatch.setattr(cli, "_interruptible", lambda: None)
    res = _run("evaluate", "--task", "NER", "--lang", "en", "--out", str(tmp_path))
    assert res.exit_code == 1 and isinstance(res.exception, AssertionError)


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "adam"], "unknown optimizer 'adam'; choose one of labeled, bootstrap, mipro, gepa"),
    (["--sampler", "grid"], "unknown sampler 'grid'; choose one of tpe, cmaes"),
    (["--objective", "speed"], "unknown objective 'speed'; choose one of f1, pareto"),
    (["--max-tokens-per-record", "300"], "--max-tokens-per-record chooses on the Pareto front: pass --objective pareto"),
    (["--sampler", "cmaes", "--objective", "pareto"], "--sampler cmaes searches one objective"),
    (["--sampler", "cmaes", "--no-continuous"], "--sampler cmaes searches the float parameters, which --no-continuous removes"),
])
def test_compile_options_are_refused_before_any_model_starts(monkeypatch, args, message):
    import kgopt.cli.main as cli

    monkeypatch.setattr(cli, "_connect", lambda *a, **k: pytest.fail("connected before checking the options"))
    monkeypatch.setattr(cli, "_interruptible", lambda: None)
    res = _run("compile", "--task", "NER", "--lang", "en", *args)
    assert res.exit_code == 2 and message in " ".join(res.output.split())


def test_compile_passes_reflect_and_no_continuous_to_its_options(monkeypatch):
    import kgopt.cli.main as cli
    import kgopt.compiler as compiler

    seen = {}

    def run_compile(options, conn):
        seen["options"] = options
        raise KeyboardInterrupt  # stop here: the options are what this test checks

    monkeypatch.setattr(cli, "_connect", lambda *a, **k: None)
    monkeypatch.setattr(cli, "_interruptible", lambda: None)
    monkeypatch.setattr(compiler, "run_compile", run_compile)
    _run("compile", "--task", "NER", "--lang", "en", "--reflect", "2", "--no-continuous")
    assert seen["options"].reflections == 2 and seen["options"].continuous is False


def test_augment_passes_copy_retries(monkeypatch):
    import kgopt.augmentation as augmentation
    import kgopt.cli.main as cli

    seen = {}

    def augment(task, lang, conn, **kw):
        seen.update(kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_connect", lambda *a, **k: None)
    monkeypatch.setattr(cli, "_interruptible", lambda: None)
    monkeypatch.setattr(augmentation, "augment", augment)
    _run("augment", "--task", "NER", "--lang", "en", "--copy-retries", "0")
    assert seen["copy_retries"] == 0 and seen["show"] is None  # the language's default (AugmentOptions)
    _run("augment", "--task", "NER", "--lang", "en", "--show", "annotations")
    assert seen["show"] == "annotations"


def test_the_show_choices_are_the_augmentation_ways():
    from kgopt.augmentation.generate import PROMPT_VERSIONS
    from kgopt.cli.options import Show

    assert [s.value for s in Show] == list(PROMPT_VERSIONS)
