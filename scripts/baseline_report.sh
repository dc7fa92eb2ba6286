#!/usr/bin/env bash
# Zero-shot baseline of every task on the bundled test data (first N records per source), on the
# configured endpoint (the embedded model if none). Prints one markdown row per task/language.
# Usage: bash scripts/baseline_report.sh [N]   (default 10)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10}
OUT=runs/baseline-report
echo "| task | lang | records | errors | P | R | F1 | LLM calls | seconds |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
for tl in NER:en NER:zh RE:en RE:zh EE:en EE:zh EET:zh EEA:zh KG:en KG:zh; do
  t=${tl%:*}; l=${tl#*:}
  .venv/bin/kgopt evaluate --task "$t" --lang "$l" --split test --limit "$N" --threads 2 \
      --out "$OUT/${t}_$l" --json 2>/dev/null \
  | .venv/bin/python -c '
import json, sys
d = json.load(sys.stdin); s = d["total"]; s = s.get("argument", s)
print(f"| {d[\"task\"]} | {sys.argv[1]} | {d[\"instances\"]} | {d[\"errors\"]} | {s[\"P\"]:.2f} | {s[\"R\"]:.2f} | {s[\"F1\"]:.2f} | {d[\"llm\"][\"calls\"] + d[\"llm\"][\"cache_hits\"]} | {d[\"seconds\"]} |")
' "$l"
done
