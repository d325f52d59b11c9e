#!/usr/bin/env bash
# Are the release binaries reproducible? Two fresh clones of HEAD at two different absolute paths
# (of different lengths), scripts/release.sh in each, one after the other (so at different times),
# and a byte-for-byte comparison. The second build uses the first one's Package.resolved, as anyone
# rebuilding a published release would. Exit 0 when every binary is identical; otherwise print what
# differs (diffoscope when installed, else section-level and string-level differences) and exit 1.
#
#   scripts/check-reproducible.sh                          all three binaries (two full builds)
#   RELEASE_PRODUCTS=securechat scripts/check-reproducible.sh  only securechat (faster)
#   KEEP=1 scripts/check-reproducible.sh                   keep both clones and outputs afterwards
#
# Builds HEAD, not uncommitted changes. Needs several GiB under ${TMPDIR:-/tmp}; two clean
# release builds take 10-20 minutes on 2 cores (docs/RELEASE.md has the figures).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
commit=$(git -C "$root" rev-parse HEAD)
[ -z "$(git -C "$root" status --porcelain -- Package.swift VERSION Sources scripts)" ] \
    || echo "check-reproducible: note: uncommitted changes are not part of this check (it builds $commit)" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/securechat-repro.XXXXXX")
cleanup() {
    if [ "${KEEP:-0}" = 1 ] || [ "${failed:-0}" = 1 ]; then
        echo "check-reproducible: clones and outputs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

first="$work/a/securechat"
second="$work/second-clone-at-a-longer-path/b/securechat"
build() {  # build DIR OUT [Package.resolved]
    local dir=$1 out=$2 pins=${3:-} started
    mkdir -p "$(dirname "$dir")"
    git clone --quiet --no-checkout "$root" "$dir"
    git -C "$dir" checkout --quiet --detach "$commit"
    started=$(date +%s)
    echo "check-reproducible: $(date -u +%FT%TZ) building in $dir" >&2
    (cd "$dir" && scripts/release.sh "$out" $pins) > "$out.log" 2>&1 \
        || { echo "check-reproducible: release.sh failed in $dir:" >&2; tail -30 "$out.log" >&2; failed=1; exit 1; }
    echo "check-reproducible: built in $(( $(date +%s) - started )) s" >&2
}

build "$first" "$work/out-a"
build "$second" "$work/out-b" "$work/out-a/Package.resolved"

echo "first:"; cat "$work/out-a/SHA256SUMS"
echo "second:"; cat "$work/out-b/SHA256SUMS"
if cmp -s "$work/out-a/SHA256SUMS" "$work/out-b/SHA256SUMS"; then
    echo "check-reproducible: PASS: identical binaries from $first and $second ($commit)"
    exit 0
fi

failed=1
echo "check-reproducible: FAIL: the binaries differ" >&2
for product in $(awk '{print $2}' "$work/out-a/SHA256SUMS"); do
    a="$work/out-a/$product" b="$work/out-b/$product"
    cmp -s "$a" "$b" && continue
    echo "==> $product differs" >&2
    if command -v diffoscope >/dev/null 2>&1; then
        diffoscope --text - --max-report-size 200000 "$a" "$b" | head -300 || true
        continue
    fi
    echo "(diffoscope not installed; sections, then strings that differ)"
    diff <(readelf -S -W "$a" | awk '{print $2, $6}') <(readelf -S -W "$b" | awk '{print $2, $6}') | head -40 || true
    diff <(strings -a -n 8 "$a" | sort -u) <(strings -a -n 8 "$b" | sort -u) | head -60 || true
done
exit 1
