"""``kgopt data``: commands on annotated data (``kgopt data check PATH``).

A sub-app of its own, registered in ``kgopt.cli.main`` with ``app.add_typer(data_app, name="data")``.
Exit status: 0 the data reads; 2 it does not (each error printed as ``error: FILE:LINE: ...``,
the first first), or the path is no data at all.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from kgopt.cli.options import Lang, Task
from kgopt.errors import KgoptError

data_app = typer.Typer(
    help="Check annotated data before compiling on it: your own (docs/own-data.md), an IEPile tree or InstructIE's files.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

def _error(text: str) -> None:
    typer.secho(f"error: {text}", fg=typer.colors.RED, err=True)


@data_app.command("check")
def check(
    path: Path = typer.Argument(..., help="A folder of your data (train.jsonl, dev.jsonl, test.jsonl, schema.json), one records file, "
                                          "an IEPile tree, InstructIE's files, or a data root holding both."),
    task: Optional[Task] = typer.Option(None, "--task", help="Whose records to check (and how your schema.json reads). Default: your "
                                                             "data's records tell (entity: NER, relation: RE, event: EE); a tree: every task."),
    lang: Optional[Lang] = typer.Option(None, "--lang", help="Only this language of a tree."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as one JSON object."),
) -> None:
    """Check every record and the schema, field by field, and count what is in the data.

    Prints records per split, how often each label occurs, labels the schema lacks or the data never uses, records with no labels and spans not in their text. Exit 2 on errors, each printed as `error: FILE:LINE: ...`.
    """
    from kgopt.data.check import check_data
    from kgopt.data.jsonio import dumps

    try:
        report = check_data(path, task.value if task else None, lang.value if lang else None)
    except (KgoptError, OSError) as exc:  # OSError: a file that cannot be read at all
        _error(str(exc))
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    typer.echo(dumps(report.to_json()) if as_json else report.text())
    if not report.ok:
        for e in report.errors:
            _error(e)
        if report.errors_total > len(report.errors):
            _error(f"... and {report.errors_total - len(report.errors)} more")
        raise typer.Exit(2)
