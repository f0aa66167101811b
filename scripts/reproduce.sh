#!/usr/bin/env bash
# reproduce.sh — train every model of a preset, evaluate each across L_valid, and write the
# paper's tables, figures and claims into results/<preset>/. See docs/reproduce.md.
#
#   scripts/reproduce.sh --preset smoke|quick|wt2-paper|cpu-paper|arch [--dry-run] [--out DIR]
#                        [--runs DIR] [--data-dir DIR] [--no-build]
#
# This wrapper only picks a Python 3 (scripts/pyenv.sh: one that has matplotlib if any does) and
# runs scripts/reproduce.py, which does the work; `--help` lists every option.
set -euo pipefail
export TRAINSHORT_CWD=$PWD
cd "$(dirname "${BASH_SOURCE[0]}")/.."
py=$(scripts/pyenv.sh) || exit 2
exec "$py" scripts/reproduce.py "$@"
