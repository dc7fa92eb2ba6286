"""``kgopt`` command line: a thin layer over the Python API.

Exit status of every command: 0 done; 1 done, but more LLM calls failed than ``--max-failures``
allows (the figures printed would measure the outage; finished work is kept); 2 bad input or
configuration; 130 interrupted.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Optional

import typer
from loguru import logger

from kgopt.cli.data import data_app
from kgopt.cli.options import Lang, Show, Task
from kgopt.errors import CallsFailed, ConfigError, KgoptError, check_failures

app = typer.Typer(
    name="kgopt",
    help="Optimisation-driven prompt compiler for knowledge-graph construction with an LLM "
    "(IEPile / InstructIE tasks, zh + en, OneKE instruction format).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")  # kgopt data check ...


# Set once Ctrl-C or SIGTERM arrived: an interrupt that lands while Optuna records a trial
# surfaces as Optuna's own "Should not reach" AssertionError, which is still the interrupt.
_INTERRUPTED = __import__("threading").Event()


def _interruptible() -> None:
    """Ctrl-C and SIGTERM end a run cleanly (partial results kept, embedded server stopped),
    even when started from a shell that ignores SIGINT for background jobs."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return

    def _interrupt(signum, frame):
        _INTERRUPTED.set()
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    # A KeyboardInterrupt raised while a weakref callback or finaliser runs (e.g. during the
    # garbage collection Optuna does after each trial) is "ignored" by Python and the Ctrl-C
    # is lost (seen in about 1 run in 3 of the interrupt test). Deliver it again, from another
    # thread a moment later: a signal sent from inside the hook would land in the hook itself.
    default_hook = sys.unraisablehook

    def _redeliver(unraisable) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            import os

            threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
            return
        default_hook(unraisable)

    sys.unraisablehook = _redeliver


def _setup_logging(verbose: bool) -> None:
    logger.remove()
    logger.add(sys.stderr, level="DEBUG" if verbose else "INFO", format="<level>{level: <7}</level> {message}")


def _fail(exc: Exception) -> None:
    typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
    raise typer.Exit(1 if isinstance(exc, CallsFailed) else 2)


def command(name: str | None = None, interrupted: str | None = None, also: tuple[type[Exception], ...] = ()):
    """``@app.command`` plus the one place errors become exit statuses: a ``KgoptError`` (or one of
    ``also``) prints one ``error:`` line and exits 2 (1 for failed calls); Ctrl-C exits 130, saying
    ``interrupted`` (what was kept). To add a command, write a function and decorate it with this."""

    def wrap(fn):
        @functools.wraps(fn)  # typer reads the options from the wrapped signature
        def run(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (KgoptError, *also) as exc:
                _fail(exc)
            except (KeyboardInterrupt, AssertionError) as exc:
                # Optuna turns a Ctrl-C that lands while it records a trial into an AssertionError.
                if isinstance(exc, AssertionError) and not _INTERRUPTED.is_set():
                    raise
                if interrupted:
                    typer.secho(f"interrupted: {interrupted}", fg=typer.colors.YELLOW, err=True)
                raise typer.Exit(130) from None

        return app.command(name)(run)

    return wrap


def _check_failures(check, *args) -> None:
    """Exit 1 with one line when ``check(*args)`` says more calls failed than --max-failures allows."""
    try:
        check(*args)
    except CallsFailed as exc:
        _fail(exc)


def _fmt(scores: dict) -> str:
    if "event" in scores:
        return "  ".join(f"{lvl}: P {s['P']:6.2f}  R {s['R']:6.2f}  F1 {s['F1']:6.2f}" for lvl, s in scores.items())
    return f"P {scores['P']:6.2f}  R {scores['R']:6.2f}  F1 {scores['F1']:6.2f}"


def _print_report(data: dict) -> None:
    typer.echo(f"{data['task']}  instances {data['instances']}  errors {data['errors']}")
    typer.echo(f"  {'total':<24} {_fmt(data['total'])}")
    for src, s in data.get("by_source", {}).items():
        typer.echo(f"  {src:<24} {_fmt(s['total'])}  (instances {s['instances']}, errors {s['errors']})")
    if data.get("ccks2023"):
        c = data["ccks2023"]
        typer.echo(f"  CCKS2023: F1 {c['F1']:.2f}  Rouge-2 {c['rouge2']:.2f}  score {c['score']:.2f}")


EndpointOpt = typer.Option(None, "--api-base", help="OpenAI-compatible base URL, e.g. http://HOST:8192/v1 (env KGOPT_API_BASE; put one holding a password or ?key= there, not here). Unset: the embedded model.")
ModelOpt = typer.Option(None, "--model", help="Model name served there, e.g. novel (env KGOPT_MODEL).")
KeyOpt = typer.Option(None, "--api-key", help="API key (default EMPTY). Never logged, but visible to other local users in process arguments: prefer env KGOPT_API_KEY or --api-key-env.")
KeyEnvOpt = typer.Option(None, "--api-key-env", metavar="NAME", help="Read the API key from the environment variable NAME (keeps it out of process arguments).")
ConfigOpt = typer.Option(None, "--config", help="A kgopt.toml with an \\[endpoint] table (default: ./kgopt.toml if present).")
VerboseOpt = typer.Option(False, "--verbose", "-v", help="Debug logging.")
DataDirOpt = typer.Option(None, "--data-dir", help="Data root holding iepile/ and InstructIE/ (or one of them), or a folder of your own data (docs/own-data.md). Default: ./dataset (env KGOPT_DATA_DIR).")
MaxFailuresOpt = typer.Option(0, "--max-failures", min=0, help="LLM calls that may fail (after retries) before the command exits 1.")


def _start(verbose: bool) -> None:
    _setup_logging(verbose)
    _interruptible()


def _connect(api_base, model, api_key, config, api_key_env=None, **kwargs):
    """The endpoint from flags > env > kgopt.toml > embedded, connected (may start the embedded model)."""
    from kgopt.clients.config import resolve_endpoint
    from kgopt.clients.credentials import warn_key_argument, warn_secret_argument
    from kgopt.clients.lm import connect

    if api_key is not None:
        warn_key_argument()  # ps shows it to every local user while kgopt runs
    warn_secret_argument("--api-base", api_base)
    return connect(resolve_endpoint(api_base, model, api_key, config_path=config, api_key_env=api_key_env), **kwargs)


@command()
def score(
    task: Task = typer.Option(..., "--task", help="Task the predictions are for."),
    input: Path = typer.Option(..., "--input", help="Predictions in the IEPile evaluator format (JSON lines)."),
    sort_by: Optional[str] = typer.Option(None, "--sort-by", help="Also report per group; only 'source' is supported."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
    lenient: bool = typer.Option(False, "--lenient", help="Parse outputs leniently (repair JSON, validate against each chunk's schema)."),
    vs: Optional[Path] = typer.Option(
        None, "--vs", metavar="OTHER.jsonl", help="Another program's predictions of the same records: also print F1(INPUT) - F1(OTHER) with a paired 95% bootstrap interval."
    ),
) -> None:
    """Score predictions with the official IEPile semantics (exact P/R/F1, errors, instances).

    With --vs, also compare them with another program's predictions of the same records: the F1 difference, its paired 95% bootstrap interval over records, and the number of records.
    """
    from kgopt.data.jsonio import dumps
    from kgopt.evaluation import compare_files, score_file

    if sort_by not in (None, "source"):
        _fail(ValueError(f"--sort-by supports 'source' only, got {sort_by!r}"))
    report = score_file(task.value, input, lenient=lenient)
    data = report.to_json(with_sources=sort_by == "source")
    diff = compare_files(task.value, input, vs, lenient=lenient) if vs else None
    if diff:
        data["vs"] = {"other": str(vs), "difference": diff.to_json()}
    if as_json:
        typer.echo(dumps(data))
        return
    _print_report(data)
    if diff:
        typer.secho(f"vs {vs}: " + _difference_line(diff), bold=True)


@command(interrupted="records finished so far are in predictions.partial.jsonl")
def evaluate(
    task: Task = typer.Option(..., "--task", help="IE task."),
    lang: Lang = typer.Option(..., "--lang", help="Language of the data and the instruction."),
    source: Optional[str] = typer.Option(None, "--source", help="One IEPile source (e.g. CrossNER_AI); default: all of the task's sources."),
    split: str = typer.Option("test", "--split", help="train, dev (InstructIE: valid) or test."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N records per source."),
    skip: int = typer.Option(0, "--skip", min=0, help="Leave out the first N records of each source (with --limit: measure a split in parts)."),
    data_dir: Optional[Path] = DataDirOpt,
    program: Optional[Path] = typer.Option(None, "--program", help="A saved program (.json). Default: the zero-shot OneKE baseline."),
    threads: int = typer.Option(1, "--threads", min=1, help="Requests in flight at once."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder for predictions.jsonl and scores.json."),
    as_json: bool = typer.Option(False, "--json", help="Print the scores as one JSON object."),
    vs_zero_shot: bool = typer.Option(False, "--vs-zero-shot", help="Also score zero-shot three ways on the same records and compare the program with the strongest (needs --program)."),
    max_failures: int = MaxFailuresOpt,
    api_base: Optional[str] = EndpointOpt,
    model: Optional[str] = ModelOpt,
    api_key: Optional[str] = KeyOpt,
    api_key_env: Optional[str] = KeyEnvOpt,
    config: Optional[Path] = ConfigOpt,
    max_tokens: int = typer.Option(512, "--max-tokens", min=16, help="Longest answer per call."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not answer from, or write to, the response cache."),
    verbose: bool = VerboseOpt,
) -> None:
    """Run a program over a split, write evaluator-format predictions, and print the scores.

    With --vs-zero-shot, also the zero-shot baseline three ways on the same records (strict: the official parse; lenient: the same answers repaired; constrained: the answer schema enforced by the server), and the program's F1 against the strongest of them with a paired 95% bootstrap interval over records; all of it goes to OUT/scores.json.
    """
    _start(verbose)
    from kgopt.data.jsonio import dumps
    from kgopt.evaluation import compare_with_zero_shot
    from kgopt.evaluation import evaluate as run

    if vs_zero_shot and program is None:
        _fail(ConfigError("--vs-zero-shot compares a saved program with the baseline: give --program FILE"))
    conn = _connect(api_base, model, api_key, config, api_key_env, max_tokens=max_tokens, cache=not no_cache)
    kw = dict(split=split, source=source, limit=limit, skip=skip, data_dir=data_dir, threads=threads, out_dir=out)
    if vs_zero_shot:
        cmp = compare_with_zero_shot(task.value, lang.value, conn, program, **kw)
        runs = {"zero-shot": cmp.zero_shot, "zero-shot constrained": cmp.constrained, str(program): cmp.program}
    else:
        runs = {str(program) if program else "zero-shot": run(task.value, lang.value, conn, program=program, **kw)}
    if as_json:
        typer.echo(dumps(cmp.to_json() if vs_zero_shot else next(iter(runs.values())).to_json()))
    else:
        _print_evaluations(runs)
        if vs_zero_shot:
            _print_comparison(cmp, f"{task.value}/{lang.value} {split}", str(program))
    for ev in runs.values():
        _check_failures(ev.check_failures, max_failures)


def _print_evaluations(runs: dict) -> None:
    for label, ev in runs.items():
        d = ev.to_json()
        if len(runs) > 1:
            typer.secho(f"== {label}", bold=True)
        _print_report(d)
        u = d["llm"]
        typer.echo(f"LLM: {u['calls']} calls, {u['cache_hits']} from cache, {u['failed_calls']} failed, {u['total_tokens']} tokens, {d['seconds']}s")
        typer.echo(f"predictions: {d['predictions']}")


def _difference_line(d) -> str:
    return d.line() + (f"  ({d.verdict()})" if d.verdict() else "")


def _print_comparison(cmp, what: str, name: str) -> None:
    f1s, best = cmp.to_json()["zero_shot_f1"], cmp.strongest
    typer.echo("zero-shot F1: " + "  ".join(f"{way} {f1:.2f}" for way, f1 in f1s.items()) + f"  (strongest: {best})")
    typer.secho(f"{what}, {cmp.program.report.total.instances} records: strongest zero-shot ({best}) F1 {f1s[best]:.2f}  vs  "
                f"{name} F1 {cmp.program.report.total.headline_f1():.2f}", bold=True)
    typer.secho(_difference_line(cmp.difference), bold=True)
    typer.echo(f"scores: {cmp.out_dir / 'scores.json'}")


@command(interrupted="samples accepted so far were written")
def augment(
    task: Task = typer.Option(..., "--task", help="IE task whose training data to augment (EET/EEA use EE's)."),
    lang: Lang = typer.Option(..., "--lang", help="Language of the data."),
    source: Optional[str] = typer.Option(None, "--source", help="One IEPile source, or one InstructIE topic for KG. Default: all."),
    per_label: int = typer.Option(3, "--per-label", min=1, help="New samples to ask for per label."),
    max_labels: Optional[int] = typer.Option(None, "--max-labels", min=1, help="Only the first N labels of each schema (to bound the cost)."),
    train_limit: Optional[int] = typer.Option(
        None, "--train-limit", min=1, help="Learn only from the first N train records per source (as compile --train-limit). Default: all."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed for the examples shown and the sampled replies."),
    data_dir: Optional[Path] = DataDirOpt,
    out: Optional[Path] = typer.Option(None, "--out", help="Augmented data root. Default: dataset/augmented (read by kgopt compile)."),
    plain: bool = typer.Option(False, "--plain", help="Do not ask the server for JSON-schema constrained output."),
    copy_retries: int = typer.Option(1, "--copy-retries", min=0, help="Times to ask a label again for the samples that were copies of real sentences (0: never)."),
    show: Optional[Show] = typer.Option(
        None, "--show", help="Show the real samples whole (sentences, llmicl-v3) or only their annotations (annotations, llmicl-v4: no sentence to copy). Default: annotations for zh, sentences for en."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
    max_failures: int = MaxFailuresOpt,
    api_base: Optional[str] = EndpointOpt,
    model: Optional[str] = ModelOpt,
    api_key: Optional[str] = KeyOpt,
    api_key_env: Optional[str] = KeyEnvOpt,
    config: Optional[Path] = ConfigOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Generate new annotated training samples with the LLM (DeepKE LLMICL style); keep only valid ones."""
    _start(verbose)
    from kgopt.augmentation import augment as run
    from kgopt.data.jsonio import dumps

    conn = _connect(api_base, model, api_key, config, api_key_env)
    rep = run(task.value, lang.value, conn, source=source, per_label=per_label, seed=seed, data_dir=data_dir, out_dir=out,
              max_labels=max_labels, train_limit=train_limit, constrained=not plain, copy_retries=copy_retries, show=show.value if show else None)
    data = rep.to_json()
    if as_json:
        typer.echo(dumps(data))
    else:
        _print_augment(data)
    u = data["llm"]
    _check_failures(check_failures, data["failed_calls"], u.get("calls", 0) + u.get("cache_hits", 0) + data["failed_calls"], max_failures,
                    f"augment {data['task']}/{data['lang']} (the samples accepted were written)")


def _print_augment(data: dict) -> None:
    typer.echo(f"{data['task']}/{data['lang']}: asked {data['asked']}, received {data['received']}, accepted {data['accepted']}, missing {data['missing']}, failed calls {data['failed_calls']}, "
               f"calls asking again for copies {data['retried_calls']}")
    for reason, n in data["rejected"].items():
        typer.echo(f"  rejected {reason:<20} {n}")
    u = data["llm"]
    typer.echo(f"LLM: {u.get('calls', 0)} calls, {u.get('total_tokens', 0)} tokens, {u.get('cache_hits', 0)} from cache")
    for f in data["files"]:
        typer.echo(f"written: {f}")


def _own_files(data_dir, train, dev, schema):
    """``--train/--dev/--schema`` as one ``UserData``, or ``--data-dir`` as it is."""
    if train is None and dev is None and schema is None:
        return data_dir
    if data_dir is not None:
        raise ConfigError("give --data-dir or your own --train/--dev/--schema files, not both")
    if None in (train, dev, schema):
        raise ConfigError("your own data needs all three of --train, --dev and --schema")
    from kgopt.data.layouts import UserData

    return UserData(train=train, dev=dev, schema=schema)


@command("compile", interrupted="finished trials are in the study; run the same command to resume")
def compile_cmd(
    task: Task = typer.Option(..., "--task", help="IE task to compile a program for."),
    lang: Lang = typer.Option(..., "--lang", help="Language of the data and the instruction."),
    source: Optional[str] = typer.Option(None, "--source", help="Train and select on one IEPile source only; default: all of the task's sources."),
    # A name, not an Enum: the choices are the optimiser registry's, which imports DSPy (seconds);
    # an unknown name is refused with the list (CompileOptions).
    optimizer: Optional[str] = typer.Option(None, "--optimizer", help="Fix the DSPy optimiser (labeled, bootstrap, mipro, gepa, or another registered one); default: the study chooses between labeled and bootstrap."),
    trials: int = typer.Option(8, "--trials", min=1, help="Finished trials the study should have; re-running resumes up to this."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (any SQLAlchemy URL, e.g. postgresql://...). Default: sqlite under compiled/."),
    storage_password_file: Optional[Path] = typer.Option(
        None, "--storage-password-file", help="Read the storage password from FILE (else KGOPT_STORAGE_PASSWORD), not from the URL."
    ),
    study: Optional[str] = typer.Option(None, "--study", help="Study name. Default: <TASK>_<lang>. A study is refused if it was run on other data or another model."),
    new_study: bool = typer.Option(False, "--new-study", help="Use the study named after this run's fingerprint (<name>-<8 hex>), created if new."),
    force: bool = typer.Option(False, "--force", help="Replace the program at --out even if its dev F1 on the same data and model is higher."),
    max_calls: Optional[int] = typer.Option(None, "--max-calls", min=1, help="Hard cap on LLM requests this run sends (cache hits are free)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Where to write the best program. Default: compiled/<TASK>_<lang>.json."),
    data_dir: Optional[Path] = DataDirOpt,
    train_file: Optional[Path] = typer.Option(None, "--train", help="Your own train records (JSON lines; docs/own-data.md), with --dev and --schema instead of --data-dir."),
    dev_file: Optional[Path] = typer.Option(None, "--dev", help="Your own dev records, which every trial is scored on."),
    schema_file: Optional[Path] = typer.Option(None, "--schema", help='Your labels: {"labels": \\[label or {"label", "description"}]}.'),
    augmented: bool = typer.Option(True, "--augmented/--no-augmented", help="Also train on dataset/augmented/ records (from kgopt augment), if any."),
    train_limit: int = typer.Option(40, "--train-limit", min=1, help="Train records per source the optimisers see."),
    dev_limit: int = typer.Option(8, "--dev-limit", min=1, help="Dev records per source each trial is scored on."),
    max_demos: int = typer.Option(4, "--max-demos", min=0, help="Most demonstrations per call the search may choose."),
    proposals: int = typer.Option(2, "--instruction-proposals", min=0, help="Instruction variants to ask the LLM for (plus the official one)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the sampler and of demonstration sampling."),
    threads: int = typer.Option(1, "--threads", min=1, help="Requests in flight at once while scoring."),
    sampler: str = typer.Option("tpe", "--sampler", help="tpe (default), or cmaes: CMA-ES on the numeric parameters (demonstration weights, temperature), TPE for the rest."),
    instructzero: int = typer.Option(0, "--instructzero", min=0, help="InstructZero-style search: N instructions written by the embedded model from soft prompts, each scored zero-shot on dev's first rung; the best joins the candidates (needs the local extra)."),
    continuous: bool = typer.Option(True, "--continuous/--no-continuous", help="Search the float parameters (temperature, demonstration weights); --no-continuous: categorical only, as before (an ablation)."),
    reflect: int = typer.Option(0, "--reflect", min=0, help="Learn from failures: after the trials, N instructions written from the best trial's dev errors, each scored as one more trial (off by default: not yet shown to help)."),
    halving: bool = typer.Option(True, "--halving/--no-halving", help="Successive halving: score dev in rungs (5, 10, 20, ... records) and stop a trial below the median at a rung."),
    objective: str = typer.Option(
        "f1", "--objective", help="f1 (default): maximise dev F1. pareto: also minimise prompt tokens per dev record (two objectives; no halving)."
    ),
    max_tokens_per_record: Optional[float] = typer.Option(
        None, "--max-tokens-per-record", min=1, help="With --objective pareto: write the best dev F1 among trials using at most N prompt tokens per dev record."
    ),
    max_failures: int = MaxFailuresOpt,
    api_base: Optional[str] = EndpointOpt,
    model: Optional[str] = ModelOpt,
    api_key: Optional[str] = KeyOpt,
    api_key_env: Optional[str] = KeyEnvOpt,
    config: Optional[Path] = ConfigOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Compile a program: DSPy optimisers inside an Optuna study, scored on dev; writes the best.

    A trial (or the zero-shot baseline) with more than a fifth of its calls failed is never scored: the run stops with exit 1, writes nothing, and a re-run resumes. A study run on other data or another model is refused (--new-study starts one for this run).
    """
    _start(verbose)
    from kgopt.clients.credentials import cli_storage_url
    from kgopt.compiler import CompileOptions, run_compile

    options = CompileOptions(  # checked here, before the model starts
        task.value, lang.value, source=source, optimizer=optimizer, trials=trials,
        storage=cli_storage_url(storage, storage_password_file), study_name=study, max_calls=max_calls, out=out,
        data_dir=_own_files(data_dir, train_file, dev_file, schema_file), augmented=augmented, train_limit=train_limit, dev_limit=dev_limit,
        max_demos=max_demos, instruction_proposals=proposals, seed=seed, threads=threads, new_study=new_study, force=force,
        halving=halving, objective=objective, max_tokens_per_record=max_tokens_per_record, sampler=sampler, instructzero_trials=instructzero, reflections=reflect,
        continuous=continuous,
    )
    res = run_compile(options, _connect(api_base, model, api_key, config, api_key_env))
    m = res.manifest
    typer.echo(f"{m['task']}/{m['lang']}: dev F1 {m['dev']['f1']:.2f} (zero-shot {m['baseline_dev']['f1']:.2f}), chosen: {m['chosen']}")
    typer.echo(f"study {res.study_name} ({res.trials_run} trials) in {res.storage}")
    u = res.usage
    typer.echo(f"LLM: {u['calls']} calls, {u['total_tokens']} tokens, {u['cache_hits']} from cache, {u['failures']} failed")
    typer.echo(f"program: {res.path}" if res.written else f"program: not written ({res.kept_reason}; --force replaces it)")
    _check_failures(check_failures, u["failures"], u["calls"] + u["cache_hits"] + u["failures"], max_failures,
                    f"compile {m['task']}/{m['lang']} (no trial with more than a fifth of its calls failed was scored)")


@command()
def regress(
    programs: Optional[list[Path]] = typer.Argument(None, help="Program files or folders. Default: every program in compiled/."),
    tolerance: float = typer.Option(2.0, "--tolerance", min=0, help="F1 points a program may fall below its recorded dev F1."),
    data_dir: Optional[Path] = DataDirOpt,
    threads: int = typer.Option(1, "--threads", min=1, help="Requests in flight at once."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model again instead of replaying cached answers."),
    max_failures: int = MaxFailuresOpt,
    api_base: Optional[str] = EndpointOpt,
    model: Optional[str] = ModelOpt,
    api_key: Optional[str] = KeyOpt,
    api_key_env: Optional[str] = KeyEnvOpt,
    config: Optional[Path] = ConfigOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Re-score saved programs on their recorded dev data; exit 1 if any fell below its manifest F1."""
    _start(verbose)
    from kgopt.regress import regress as run

    conn = _connect(api_base, model, api_key, config, api_key_env, cache=not no_cache)
    results = run(programs, conn, tolerance=tolerance, data_dir=data_dir, threads=threads)
    for r in results:
        typer.echo(r.line())
    failed = [r for r in results if not r.passed]
    typer.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    llm = [r.scores["llm"] for r in results]
    _check_failures(check_failures, sum(u["failed_calls"] for u in llm), sum(u["calls_asked"] for u in llm), max_failures,
                    "regress (the verdicts above are not a measurement)")
    if failed:
        raise typer.Exit(1)


@command()
def dashboard(
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL, without its password. Default: compiled/studies.sqlite3."),
    storage_password_file: Optional[Path] = typer.Option(None, "--storage-password-file", help="A file holding the --storage password (else env KGOPT_STORAGE_PASSWORD)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to bind; 127.0.0.1 keeps it local."),
    port: int = typer.Option(8080, "--port", min=1, max=65535, help="Port to serve on."),
) -> None:
    """Serve optuna-dashboard on the compiler's study storage."""
    from kgopt.clients.credentials import cli_storage_url
    from kgopt.dashboard import serve

    serve(cli_storage_url(storage, storage_password_file), host, port)


@command(interrupted="finished calls are in OUT/results.jsonl; run the same command to resume")
def extract(
    input_path: Path = typer.Option(..., "--input", help="Documents: JSON lines {id, text, cate?}, a text file (one document per line) or a folder of .txt files."),
    lang: Lang = typer.Option(..., "--lang", help="Language of the documents and programs."),
    tasks: str = typer.Option("KG", "--tasks", help="Comma-separated tasks to run on every document window: KG, RE, NER, EE, EET."),
    program: Optional[list[Path]] = typer.Option(None, "--program", help="A program file to use for its task (repeatable). Default: compiled/<TASK>_<lang>.json, else the zero-shot baseline."),
    schema: Optional[list[str]] = typer.Option(None, "--schema", help="[TASK=]FILE: the KG topics (an InstructIE schema_*.json; the default TASK), or for RE/NER/EE an IEPile schema.json or your own schema file (docs/own-data.md). Default: the program's manifest, else the data's."),
    out: Path = typer.Option(Path("kg-out"), "--out", help="Output directory: results log, graph exports, report."),
    workers: int = typer.Option(4, "--workers", min=1, help="LLM requests in flight at once."),
    max_calls: Optional[int] = typer.Option(None, "--max-calls", min=1, help="Hard cap on LLM requests this run sends (cache hits are free)."),
    max_failures: Optional[int] = typer.Option(None, "--max-failures", min=0, help="Stop cleanly once more calls than this have failed after retries."),
    window_chars: int = typer.Option(500, "--window-chars", min=20, help="Longest window of a document sent in one call, in characters."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip malformed input lines (listed in the report) instead of stopping."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Ask the model again instead of replaying cached answers."),
    graph_db: Optional[str] = typer.Option(None, "--graph-db", help="Also load the graph into a database: falkordb://HOST:PORT/GRAPH or bolt://HOST:7687 (see graph-load)."),
    graph_db_user: Optional[str] = typer.Option(None, "--graph-db-user", help="The --graph-db user (Neo4j; default neo4j)."),
    graph_db_password_file: Optional[Path] = typer.Option(None, "--graph-db-password-file", help="Read the --graph-db password from this file's first line (else FALKORDB_PASSWORD / NEO4J_PASSWORD; a password in the URI is visible in ps)."),
    data_dir: Optional[Path] = DataDirOpt,
    api_base: Optional[str] = EndpointOpt,
    model: Optional[str] = ModelOpt,
    api_key: Optional[str] = KeyOpt,
    api_key_env: Optional[str] = KeyEnvOpt,
    config: Optional[Path] = ConfigOpt,
    verbose: bool = VerboseOpt,
) -> None:
    """Build a knowledge graph from documents with the compiled programs; re-running resumes.

    Exit status: 0 done; 1 done but some calls failed (listed; re-run to retry them);
    2 bad input or configuration, or stopped by --max-failures/--max-calls (finished work kept).
    """
    _start(verbose)
    from kgopt.extraction import extract as run
    from kgopt.graph.databases import cli_password

    schemas = {}
    for item in schema or []:
        task_name, _, path = item.rpartition("=")
        schemas[(task_name or "KG").upper()] = path
    conn = lambda: _connect(api_base, model, api_key, config, api_key_env, cache=not no_cache, max_calls=max_calls)  # noqa: E731
    report = run(
        input_path, lang.value, out, tasks=[t.strip() for t in tasks.split(",") if t.strip()], programs=program or [],
        schemas=schemas, connection=conn, workers=workers, max_failures=max_failures, window_chars=window_chars,
        skip_bad=skip_bad, data_dir=data_dir, graph_db=graph_db, graph_db_user=graph_db_user,
        graph_db_password=cli_password(graph_db, graph_db_password_file, "--graph-db", "--graph-db-password-file"),
    )
    r = report
    typer.echo(f"documents {r.documents} (empty {r.empty_documents}, skipped bad lines {len(r.bad_lines)}); calls planned {r.units}: "
               f"{r.already_done} done before, {r.ran} run now ({r.ok} ok, {r.unparsable} unparsable, {len(r.failed)} failed)")
    u = r.usage
    typer.echo(f"LLM: {u.get('calls', 0)} calls, {u.get('total_tokens', 0)} tokens, {u.get('cache_hits', 0)} from cache, {u.get('retries', 0)} retries; {r.seconds:.1f}s")
    typer.echo(f"graph: {r.graph['nodes']} nodes, {r.graph['triples']} triples -> {out}")
    for f in r.failed[:10]:
        typer.secho(f"failed: {f['doc']} window {f['chunk']} {f['task']}: {f['error']}", fg=typer.colors.YELLOW, err=True)
    if r.failed:
        typer.secho(f"{len(r.failed)} calls failed (all in {out / 'report.json'}); run the same command to retry them", fg=typer.colors.YELLOW, err=True)
        raise typer.Exit(1)


@command("graph-stats")
def graph_stats(
    out: Path = typer.Argument(..., help="A `kgopt extract --out` directory."),
    as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON."),
) -> None:
    """Counts of a built graph: nodes by type, triples by relation, documents, grounding."""
    from kgopt.data.jsonio import dumps
    from kgopt.graph.stats import graph_stats as stats

    s = stats(out)
    if as_json:
        typer.echo(dumps(s, indent=2))
        return
    typer.echo(f"nodes {s['nodes']}  triples {s['triples']}  observations {s['observations']} "
               f"(grounded {s['grounded_observations']})  documents with triples {s['documents_with_triples']}")
    typer.echo("nodes by type:")
    for k, v in s["nodes_by_type"].items():
        typer.echo(f"  {v:>8}  {k}")
    typer.echo("triples by relation:")
    for k, v in s["triples_by_relation"].items():
        typer.echo(f"  {v:>8}  {k}")


@command("graph-load")
def graph_load(
    out: Path = typer.Argument(..., help="A `kgopt extract --out` directory (nodes.csv and triples.jsonl are read)."),
    into: str = typer.Option(..., "--into", help="falkordb://HOST:PORT/GRAPH, or bolt://HOST:7687 / neo4j://HOST:7687 (a password in it is visible to other users in ps: prefer --password-file)."),
    user: Optional[str] = typer.Option(None, "--user", help="Neo4j user (default neo4j)."),
    password_file: Optional[Path] = typer.Option(None, "--password-file", help="Read the database password from this file's first line (not visible in ps, unlike the URI)."),
    timeout: Optional[float] = typer.Option(None, "--timeout", min=0.001, help="Connect and socket timeout in seconds (default: env KGOPT_GRAPH_DB_TIMEOUT, else 30)."),
) -> None:
    """Load a built graph into FalkorDB or Neo4j with idempotent Cypher (loading twice adds nothing).

    Every row is checked before anything is written: bad input writes nothing.
    Neo4j: one transaction, all or nothing.
    FalkorDB (no multi-statement transactions): a load cut off midway leaves part of the graph; the same command again completes it.

    Passwords: --password-file, FALKORDB_PASSWORD / NEO4J_PASSWORD, or in the URI (seen by ps). Never printed.
    """
    _setup_logging(False)
    from kgopt.graph.export import read_graph
    from kgopt.graph.databases import cli_password, load_graph
    from kgopt.redaction import scrub

    password = None
    try:
        password = cli_password(into, password_file)
        sent = load_graph(read_graph(out), into, user=user, password=password, timeout=timeout)
    except KgoptError as exc:
        _fail(KgoptError(scrub(str(exc), into, password)))  # load.py redacts already; this is the last gate
    typer.echo(f"loaded {sent['nodes']} nodes and {sent['edges']} edges from {out}")


@command("graph-view", also=(OSError,))
def graph_view(
    out: Path = typer.Argument(..., help="A `kgopt extract --out` directory (it holds graph.html)."),
    serve: bool = typer.Option(False, "--serve", help="Serve graph.html (nothing else of the folder) on 127.0.0.1 instead of opening the file."),
    port: int = typer.Option(0, "--port", min=0, max=65535, help="Port for --serve (0: a free one)."),
) -> None:
    """Look at a built graph: open graph.html in a browser, or serve it on 127.0.0.1 (Ctrl-C stops)."""
    from kgopt.graph.view import serve_view, view_path

    path = view_path(out)
    if not serve:
        import webbrowser

        opened = webbrowser.open(path.resolve().as_uri())
        typer.echo(f"{'opened' if opened else 'open this file in a browser:'} {path.resolve()}")
        return
    server = serve_view(out, port)
    typer.echo(f"serving http://127.0.0.1:{server.server_port}/graph.html (Ctrl-C stops)")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


@command()
def tasks() -> None:
    """List the tasks, their datasets and schema split sizes."""
    from kgopt.core.tasks import TASKS

    for spec in TASKS.values():
        typer.echo(f"{spec.name:<4} {spec.dataset:<11} split {spec.split_size}  answer shape: {spec.shape}")


def main() -> None:  # pragma: no cover - console entry
    app()
