#!/usr/bin/env bash
# A minimal Debian 12 (bookworm) root file system with no Swift in it, plus only the runtime packages
# the README lists for the release binaries. Tests/Integration/ReleaseBinaryTests runs the binaries
# from scripts/release.sh inside it (chroot): if one needed a Swift library, or a Debian library
# that is not listed, it would not start there.
#
#   scripts/make-debian-root.sh DIR        (needs root and debootstrap; about 1-3 minutes)
#
# Idempotent: an existing complete root in DIR with the same package list is kept. DEBIAN_MIRROR
# overrides the mirror.
set -euo pipefail
dir=${1:?usage: scripts/make-debian-root.sh DIR}
# The README's "Running a release binary" list: keep the two equal. ca-certificates: securechat
# loads the system's trust roots at start, even for ws:// (without them it exits with NIOSSL's
# "unknownError([])"; this root found that).
runtime_packages=(libsodium23 libedit2 ca-certificates)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

marker="bookworm minbase ${runtime_packages[*]}"
if [ "$(cat "$dir/.securechat-root-complete" 2>/dev/null)" = "$marker" ]; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "make-debian-root: needs root (debootstrap and chroot)" >&2
    exit 1
fi
if ! command -v debootstrap >/dev/null 2>&1; then
    echo "make-debian-root: no debootstrap (scripts/install-deps.sh installs it)" >&2
    exit 1
fi
mkdir -p "$(dirname "$dir")"
partial="$(realpath -m "$dir.partial")"
# debootstrap mounts /proc (and /sys) inside the root while it runs; a run killed with SIGKILL
# leaves them mounted. Unmount whatever is mounted under the partial root (deepest first) before
# removing one left by an earlier run, so rm -rf never walks into them, and when this script ends.
unmount_partial() {
    local mountpoint
    # Bounded by the mount table.
    for mountpoint in $(awk -v root="$partial" '$2 == root || index($2, root "/") == 1 {print $2}' \
            /proc/mounts | sort -r); do
        umount -l "$mountpoint" 2>/dev/null || true
    done
}
trap unmount_partial EXIT
trap 'exit 130' INT TERM
unmount_partial
rm -rf "$dir.partial"
started=$(date +%s)
# minbase: essential packages and apt only. The packages come signed from the Debian archive
# (debootstrap checks them against debian-archive-keyring).
debootstrap --variant=minbase --include="$(IFS=,; echo "${runtime_packages[*]}")" \
    bookworm "$dir.partial" "$mirror" > "$dir.log" 2>&1 \
    || { echo "make-debian-root: debootstrap failed; the end of $dir.log:" >&2; tail -20 "$dir.log" >&2; exit 1; }
if [ -e "$dir.partial/opt/swift" ] || find "$dir.partial" -name 'libswiftCore*' -print -quit | grep -q .; then
    echo "make-debian-root: the new root has Swift in it; it cannot prove anything" >&2
    exit 1
fi
echo "$marker" > "$dir.partial/.securechat-root-complete"
rm -rf "$dir"
mv "$dir.partial" "$dir"
echo "make-debian-root: Debian $(cat "$dir/etc/debian_version") in $dir ($(( $(date +%s) - started )) s)" >&2
