#!/usr/bin/env bash
# install_deps.sh — make sure the Debian packages trainshort needs are installed.
#
# Checks with dpkg-query and installs only what is missing (apt-get update && apt-get install),
# through sudo when not root. Prints one line "deps: all present" when there is nothing to do,
# so `make test` stays quiet. Exit 1 with the command to run if it cannot install.
#
# Usage: scripts/install_deps.sh [--no-optional]
#   --no-optional   do not try python3-matplotlib (only used by the plot scripts)
set -euo pipefail

# build-essential: gcc and make. libopenblas-openmp-dev: BLAS built for OpenMP (see the
# Makefile). libcjson-dev: the config parser. libdnnl-dev: oneDNN, the bf16 matrix products.
# python3: the reference scripts.
required=(build-essential libopenblas-openmp-dev libcjson-dev libdnnl-dev python3)
optional=(python3-matplotlib)
if [[ "${1:-}" == "--no-optional" ]]; then optional=(); fi

installed() {
    # "install ok installed" is the only status that means the package is really there
    # (a removed package can still be listed with its config files).
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

if ! command -v dpkg-query >/dev/null 2>&1; then
    echo "deps: dpkg-query not found (not Debian/Ubuntu?); install by hand: ${required[*]}" >&2
    exit 1
fi

missing=()
for p in "${required[@]}"; do installed "$p" || missing+=("$p"); done
missing_optional=()
for p in "${optional[@]}"; do installed "$p" || missing_optional+=("$p"); done

if [[ ${#missing[@]} -eq 0 && ${#missing_optional[@]} -eq 0 ]]; then
    echo "deps: all present"
    exit 0
fi

want=("${missing[@]}" "${missing_optional[@]}")
cmd="apt-get update && apt-get install -y --no-install-recommends ${want[*]}"

# How to run apt-get: directly as root, through passwordless sudo otherwise, or not at all.
sudo=""
can_install=1
if ! command -v apt-get >/dev/null 2>&1; then
    can_install=0
elif [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
    else
        can_install=0
    fi
fi

if [[ $can_install -eq 0 ]]; then
    if [[ ${#missing[@]} -eq 0 ]]; then
        # Only optional packages are missing: the build and the tests work without them.
        echo "deps: optional ${missing_optional[*]} missing (plots only);" \
            "to install: sudo sh -c '$cmd'"
        exit 0
    fi
    echo "deps: missing ${want[*]}; cannot install them here (need apt-get and root or sudo)." >&2
    echo "deps: run: sudo sh -c '$cmd'" >&2
    exit 1
fi

echo "deps: installing ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get update -qq; then
    # Without the package lists nothing can be installed; that only matters for required ones.
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "deps: apt-get update failed; missing ${missing[*]}; run: sudo sh -c '$cmd'" >&2
        exit 1
    fi
    echo "deps: apt-get update failed; optional ${missing_optional[*]} not installed" >&2
    exit 0
fi
if ! $sudo apt-get install -y -qq --no-install-recommends "${want[@]}"; then
    # apt-get installs nothing when one name fails: retry with the required packages alone, so
    # that a missing plotting library does not cost us the compiler.
    if [[ ${#missing[@]} -gt 0 ]]; then
        $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" || true
    fi
fi
for p in "${missing[@]}"; do
    if ! installed "$p"; then
        echo "deps: $p still missing after apt-get install; run: sudo sh -c '$cmd'" >&2
        exit 1
    fi
done
for p in "${missing_optional[@]}"; do
    installed "$p" || echo "deps: optional $p could not be installed (plots only)" >&2
done
echo "deps: done"
