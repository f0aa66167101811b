#!/usr/bin/env bash
# pyenv.sh — the Python 3 interpreter for trainshort's scripts.
#
# Picks $PYTHON if set; otherwise the first of /usr/bin/python3 and `python3` on PATH that can
# import matplotlib (Debian's python3-matplotlib lives in /usr/bin/python3, while a pyenv or venv
# python3 earlier on PATH often lacks it); otherwise the first of them that exists. The scripts
# need only the standard library; matplotlib adds the figures.
#
# Usage: scripts/pyenv.sh                 print the interpreter's path
#        scripts/pyenv.sh SCRIPT [ARGS]   run SCRIPT with it
# Exit status 2 with one "error: " line when there is no Python 3 at all.
set -euo pipefail

candidates=()
if [[ -n "${PYTHON:-}" ]]; then
    candidates=("$PYTHON")
else
    [[ -x /usr/bin/python3 ]] && candidates+=(/usr/bin/python3)
    if command -v python3 >/dev/null 2>&1; then candidates+=("$(command -v python3)"); fi
fi

py=""
for c in "${candidates[@]}"; do
    if "$c" -c 'import matplotlib' >/dev/null 2>&1; then
        py=$c
        break
    fi
done
if [[ -z $py ]]; then
    for c in "${candidates[@]}"; do
        if "$c" -c 'import sys; sys.exit(sys.version_info[0] != 3)' >/dev/null 2>&1; then
            py=$c
            break
        fi
    done
fi
if [[ -z $py ]]; then
    echo "error: no Python 3 interpreter found (tried ${candidates[*]:-/usr/bin/python3 and python3}); install python3" >&2
    exit 2
fi

if [[ $# -eq 0 ]]; then
    echo "$py"
else
    exec "$py" "$@"
fi
