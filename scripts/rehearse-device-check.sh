#!/usr/bin/env bash
# CI's rehearsal of the GPU check: scripts/device-check.sh --dry-run (CPU, TRITON_INTERPRET=1,
# tiny shapes) in a throwaway environment holding only what the bare GPU image holds
# (scripts/bare_env.py), on a copy of the tree exactly as the device tool sends it: tracked and
# untracked-not-ignored files, no install. An import or collection error fails it.
#   bash scripts/rehearse-device-check.sh [PYTHON]   (PYTHON: the interpreter whose packages are linked; default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
src_py=${1:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$src_py" scripts/bare_env.py "$work/env" >/dev/null
mkdir "$work/tree"
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
    [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$work/tree"
echo "rehearsal: bare env ($(wc -l <"$work/env/IMAGE.txt") distributions), tree copy of $(find "$work/tree" -type f | wc -l) files"
cd "$work/tree"
OUT="$work/out" PYTHON="$work/env/bin/python" bash scripts/device-check.sh --dry-run
