#!/usr/bin/env bash
# get_data.sh — put WikiText wiki.{train,valid,test}.tokens into data/<name>/.
#
# Usage: scripts/get_data.sh wikitext-2|wikitext-103 [--from DIR] [--url URL] [--quiet-if-present]
#
#   --from DIR          copy from a local folder instead of downloading. DIR is the dataset folder
#                       itself or its parent holding <name>/ (CI: --from ../shared/data). Files are
#                       copied, not linked, so the token caches written beside them land in data/
#                       (the shared folder is read-only).
#   --url URL           download this zip instead of the official one (a mirror).
#   --quiet-if-present  print nothing when the data is already there and verified.
#
# WikiText-2 is verified file by file against the sha256 sums below (from the shared data
# README; the same files as in the official wikitext-2-v1.zip). WikiText-103 is verified by the
# zip's size and sha256 when downloaded; its text files have no published sums.
#
# WikiText-103 with --from: the shared copy has valid, test and vocab.txt but no training text.
# Those are copied, the missing train file is reported, and the exit status is 0 as long as
# valid and test were found (evaluation works; training on WikiText-103 needs the download).
#
# Files are staged in a hidden folder under data/, checked, then renamed into place one by one,
# so an interrupted or failed run leaves data/<name>/ as it was. Exit 1 on any failure.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SPLITS=(train valid test)

declare -A SHA256=(
    [wikitext-2/wiki.train.tokens]=9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f
    [wikitext-2/wiki.valid.tokens]=f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8
    [wikitext-2/wiki.test.tokens]=d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0
)
ZIP_URL_BASE="https://s3.amazonaws.com/research.metamind.io/wikitext"
ZIP_103_BYTES=190229076
ZIP_103_SHA256=242ba0f20b329cfdf1ccc61e9e9e5b59becf189db7f7a81cd2a0e2fc31539590

die() {
    echo "get_data: $*" >&2
    exit 1
}
usage() {
    sed -n '/^# Usage/,/--quiet-if-present  /s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
    exit 2
}

name="" from="" url="" quiet=0
while [[ $# -gt 0 ]]; do
    case "$1" in
    wikitext-2 | wikitext-103) name="$1" ;;
    --from) from="${2:?--from needs a folder}" && shift ;;
    --url) url="${2:?--url needs a URL}" && shift ;;
    --quiet-if-present) quiet=1 ;;
    -h | --help) usage ;;
    *) echo "get_data: unknown argument '$1'" >&2 && usage ;;
    esac
    shift
done
[[ -n "$name" ]] || usage
dest="$ROOT/data/$name"
rel="data/$name"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

# 0 if file $2 (the copy of wiki.*.tokens of dataset $1) has the known sum, or none is known.
verified() {
    local want="${SHA256[$1/$(basename "$2")]:-}"
    [[ -f "$2" ]] && { [[ -z "$want" ]] || [[ "$(sha_of "$2")" == "$want" ]]; }
}

present() {
    local s
    for s in "${SPLITS[@]}"; do verified "$name" "$dest/wiki.$s.tokens" || return 1; done
}

# Hidden staging folder under data/ (same file system, so mv is a rename); removed on exit.
stage=""
cleanup() { if [[ -n "$stage" ]]; then rm -rf "$stage"; fi; }
trap cleanup EXIT
trap 'exit 130' INT TERM # exit through the EXIT trap, so an interrupted run leaves no stage
make_stage() {
    mkdir -p "$ROOT/data"
    stage="$(mktemp -d "$ROOT/data/.get_data.XXXXXX")"
}

# Move the staged files into data/<name>/, one rename each.
install_staged() {
    mkdir -p "$dest"
    local f
    for f in "$stage"/*; do
        [[ -f "$f" ]] || continue # an empty stage leaves the literal glob
        chmod 644 "$f"            # writable copies, whatever the source's mode (shared: 444)
        mv -f "$f" "$dest/"
    done
}

from_dir() {
    local src="$from"
    [[ -d "$src/$name" ]] && src="$src/$name"
    [[ -d "$src" ]] || die "--from '$from': no such folder"
    ls "$src"/wiki.*.tokens >/dev/null 2>&1 ||
        die "--from '$from': no wiki.*.tokens in '$src' or '$src/$name'"
    # WikiText-2 must be complete; WikiText-103 may lack only the training text.
    local s needed=("${SPLITS[@]}") copied=() missing=()
    if [[ "$name" == wikitext-103 ]]; then needed=(valid test); fi
    for s in "${SPLITS[@]}"; do [[ -f "$src/wiki.$s.tokens" ]] || missing+=("wiki.$s.tokens"); done
    for s in "${needed[@]}"; do
        [[ -f "$src/wiki.$s.tokens" ]] || die "'$src' lacks ${missing[*]}; nothing changed in $rel"
    done
    make_stage
    for s in "${SPLITS[@]}"; do
        local f="wiki.$s.tokens"
        if [[ ! -f "$src/$f" ]]; then
            continue
        elif verified "$name" "$dest/$f" && cmp -s "$src/$f" "$dest/$f"; then
            copied+=("$s") # already there and identical: keep it (and its token caches)
        else
            cp "$src/$f" "$stage/$f" || die "cannot copy '$src/$f'"
            verified "$name" "$stage/$f" ||
                die "'$src/$f': sha256 $(sha_of "$stage/$f") is not the published one" \
                    "(corrupt, or another version); nothing changed in $rel"
            copied+=("$s")
        fi
    done
    local extra
    for extra in README.md vocab.txt; do # the licence/attribution, and 103's full-train vocabulary
        if [[ -f "$src/$extra" ]]; then cp "$src/$extra" "$stage/$extra"; fi
    done
    install_staged
    echo "$rel: copied from $src (${copied[*]})"
    if [[ ${#missing[@]} -gt 0 ]]; then
        echo "$rel: ${missing[*]} not in $src — evaluation works; training on $name needs" \
            "the official archive: scripts/get_data.sh $name (online)"
    fi
}

download() { # url file
    if command -v curl >/dev/null 2>&1; then
        curl -fsSL --retry 2 --connect-timeout 20 -o "$2" "$1"
    elif command -v wget >/dev/null 2>&1; then
        wget -q --tries=3 --timeout=20 -O "$2" "$1"
    else
        die "neither curl nor wget is installed (apt-get install curl)"
    fi
}

unzip_to() { # zip dir
    if command -v unzip >/dev/null 2>&1; then
        unzip -q "$1" -d "$2"
    else
        python3 -m zipfile -e "$1" "$2"
    fi
}

from_archive() {
    local verified_note=""
    local zip_url="${url:-$ZIP_URL_BASE/$name-v1.zip}"
    make_stage
    local zip="$stage/archive.zip"
    echo "$rel: downloading $zip_url"
    download "$zip_url" "$zip" 2>/dev/null ||
        die "cannot download $zip_url (no network?); nothing changed in $rel;" \
            "offline, use --from DIR"
    if [[ "$name" == wikitext-103 ]]; then
        # The official zip's size and sum are known (Hugging Face dataset_infos); a mirror given
        # with --url may repackage it, so there a mismatch is only a warning.
        local bytes problem=""
        bytes=$(stat -c %s "$zip")
        if [[ "$bytes" != "$ZIP_103_BYTES" ]]; then
            problem="$bytes bytes, expected $ZIP_103_BYTES"
        elif [[ "$(sha_of "$zip")" != "$ZIP_103_SHA256" ]]; then
            problem="sha256 differs from the official $ZIP_103_SHA256"
        fi
        if [[ -n "$problem" && -z "$url" ]]; then die "$zip_url: $problem"; fi
        if [[ -n "$problem" ]]; then
            echo "get_data: warning: $zip_url: $problem" >&2
            verified_note=" (not verified)"
        fi
    fi
    mkdir "$stage/x"
    unzip_to "$zip" "$stage/x" 2>/dev/null || die "cannot unpack $zip_url (not a zip archive?)"
    rm -f "$zip"
    local s f
    for s in "${SPLITS[@]}"; do
        f="$(find "$stage/x" -name "wiki.$s.tokens" | head -n 1)"
        [[ -n "$f" ]] || die "$zip_url has no wiki.$s.tokens"
        verified "$name" "$f" ||
            die "$zip_url: wiki.$s.tokens has sha256 $(sha_of "$f"), not the published one"
        mv "$f" "$stage/wiki.$s.tokens"
    done
    rm -rf "$stage/x"
    install_staged
    echo "$rel: downloaded${verified_note:- and verified}"
}

if present; then
    [[ $quiet -eq 1 ]] || echo "$rel: present"
    exit 0
fi
if [[ -n "$from" ]]; then from_dir; else from_archive; fi
