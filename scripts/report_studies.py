"""Print every trial of the compile studies as a markdown table (what BENCHMARKS.md#priors-the-first-trials-of-a-new-study cites).

One row per finished or failed trial: the parameters that tell trials apart, dev F1, dev
errors, LLM calls and seconds, and why a trial was not scored (pruned, duplicate, error).
Usage:

    .venv/bin/python scripts/report_studies.py [--storage sqlite:///compiled/studies.sqlite3] [STUDY ...]

A server URL's password comes from KGOPT_STORAGE_PASSWORD (or --storage-password-file), not the URL.
"""

import argparse

import optuna

from kgopt.clients.credentials import cli_storage_url
from kgopt.compiler.storage import existing_storage

KEYS = ("answer_format", "output", "num_demos", "demo_choice", "split_size", "instruction", "temperature", "max_items", "max_len", "demo_w_similarity", "demo_w_coverage", "demo_w_diversity", "demo_w_length")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("studies", nargs="*", help="study names (default: all)")
    ap.add_argument("--storage", default=None)
    ap.add_argument("--storage-password-file", default=None)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = existing_storage(cli_storage_url(args.storage, args.storage_password_file))
    names = args.studies or [s.study_name for s in optuna.get_all_study_summaries(url)]
    print("| study | zero-shot dev F1 | trial | state | " + " | ".join(KEYS) + " | dev F1 | dev errors | calls | seconds | note |")
    print("|---|---:|---:|---|" + "---|" * len(KEYS) + "---:|---:|---:|---:|---|")
    for name in names:
        study = optuna.load_study(study_name=name, storage=url)
        base = (study.user_attrs.get("baseline_dev") or {}).get("f1")
        for t in study.trials:
            if t.state.name in ("WAITING", "RUNNING"):
                continue
            a = t.user_attrs
            note = a.get("error") or a.get("failed") or (f"duplicate of {a['duplicate_of']}" if "duplicate_of" in a else "") or a.get("stopped", "")
            value = f"{t.values[0]:.2f}" if t.values else ""  # dev F1: the first objective of a pareto study too
            print(
                f"| {name} | {base if base is not None else ''} | {t.number} | {t.state.name} | "
                + " | ".join(str(t.params.get(k, "")) for k in KEYS)
                + f" | {value} | {a.get('dev_errors', '')} | {a.get('llm_calls', '')} | {a.get('seconds', '')} | {str(note)[:80]} |"
            )


if __name__ == "__main__":
    main()
