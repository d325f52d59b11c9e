#!/usr/bin/env bash
# Are the release binaries reproducible? Fresh clones of HEAD at different absolute paths (of
# different lengths), scripts/release.sh in each, one after the other (so at different times), and
# a byte-for-byte comparison. Later builds use the first one's Package.resolved, as anyone rebuilding
# a published release would. Exit 0 when every binary is identical; otherwise print what differs
# (diffoscope when installed, else section sizes and strings) and exit 1.
#
#   scripts/check-reproducible.sh                     two clones, all three binaries (two full builds)
#   RELEASE_PRODUCTS=securechat scripts/check-reproducible.sh      only securechat
#   scripts/check-reproducible.sh --against OUTDIR    one clone, compared with OUTDIR, which release.sh
#                                                     built from HEAD in another checkout (scripts/test.sh
#                                                     does this for securechat)
#   KEEP=1 ...                                        keep the clones and outputs afterwards
#
# Builds HEAD, not uncommitted changes. Needs a few GiB under ${TMPDIR:-/tmp}. Figures: docs/RELEASE.md.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd -P)
commit=$(git -C "$root" rev-parse HEAD)
against=""
if [ "${1:-}" = "--against" ]; then
    against=$(cd "${2:?--against OUTDIR}" && pwd -P)
fi
[ -z "$(git -C "$root" status --porcelain -- Package.swift VERSION Sources)" ] \
    || echo "check-reproducible: note: uncommitted changes are not part of this check (it builds $commit)" >&2
work=$(mktemp -d "${TMPDIR:-/tmp}/securechat-repro.XXXXXX")
failed=0
cleanup() {
    if [ "${KEEP:-0}" = 1 ] || [ "$failed" = 1 ]; then
        echo "check-reproducible: clones and outputs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

build() {  # build CLONE_DIR OUTDIR [Package.resolved]
    local dir=$1 out=$2 pins=${3:-} started
    mkdir -p "$(dirname "$dir")"
    git clone --quiet --no-checkout "$root" "$dir"
    git -C "$dir" checkout --quiet --detach "$commit"
    started=$(date +%s)
    echo "check-reproducible: $(date -u +%FT%TZ) building in $dir" >&2
    if ! (cd "$dir" && scripts/release.sh "$out" $pins) > "$out.log" 2>&1; then
        echo "check-reproducible: release.sh failed in $dir:" >&2
        tail -30 "$out.log" >&2
        failed=1
        exit 1
    fi
    echo "check-reproducible: built in $(( $(date +%s) - started )) s" >&2
}

if [ -n "$against" ]; then
    first_out=$against
    built=$(sed -n 's/^commit=//p' "$against/BUILDINFO")
    if [ "$built" != "$commit" ]; then
        echo "check-reproducible: $against was built from '$built', not HEAD ($commit): nothing to compare" >&2
        failed=1
        exit 1
    fi
    export RELEASE_PRODUCTS=${RELEASE_PRODUCTS:-$(sed -n 's/^products=//p' "$against/BUILDINFO")}
else
    first_out="$work/out-a"
    build "$work/a/securechat" "$first_out"
fi
second_out="$work/out-b"
build "$work/second-clone-at-a-longer-path/b/securechat" "$second_out" "$first_out/Package.resolved"

products=$(awk '{print $2}' "$second_out/SHA256SUMS")
echo "first ($first_out):"
for product in $products; do grep -E "  $product\$" "$first_out/SHA256SUMS" || echo "(no $product)"; done
echo "second ($second_out):"
cat "$second_out/SHA256SUMS"
status=0
for product in $products; do
    a="$first_out/$product" b="$second_out/$product"
    if cmp -s "$a" "$b"; then
        echo "check-reproducible: $product identical"
        continue
    fi
    status=1
    echo "==> $product differs" >&2
    if command -v diffoscope >/dev/null 2>&1; then
        diffoscope --text - --max-report-size 200000 "$a" "$b" | head -300 || true
        continue
    fi
    echo "(diffoscope not installed: section sizes, then strings that differ)"
    diff <(readelf -S -W "$a" | awk '{print $2, $6}') <(readelf -S -W "$b" | awk '{print $2, $6}') | head -40 || true
    diff <(strings -a -n 8 "$a" | sort -u) <(strings -a -n 8 "$b" | sort -u) | head -60 || true
done
if [ "$status" = 0 ]; then
    echo "check-reproducible: PASS: identical binaries from two checkouts at two paths ($commit)"
else
    failed=1
    echo "check-reproducible: FAIL: the binaries differ" >&2
fi
exit "$status"
