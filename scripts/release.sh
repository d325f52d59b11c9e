#!/usr/bin/env bash
# Reproducible release binaries: relay, securechat and simulator, with the Swift standard library
# linked in (--static-swift-stdlib), written to OUTDIR with SHA256SUMS, BUILDINFO and the
# Package.resolved they were built with. The hashes are printed at the end.
#
#   scripts/release.sh OUTDIR                     build HEAD's sources into OUTDIR
#   scripts/release.sh OUTDIR Package.resolved    the same, with exactly these dependency versions
#                                                 (to rebuild a published release: README,
#                                                 "Verifying a release")
#   RELEASE_PRODUCTS=securechat scripts/release.sh OUTDIR     only some of the binaries
#
# The same commit gives the same bytes whatever the checkout's path and whenever it runs, on the
# same toolchain (Swift 6.3.1) and the same Debian 12 build packages (BUILDINFO records both).
# scripts/check-reproducible.sh proves it with two clones at two paths. Each choice below that
# makes the output reproducible says which difference it removes; every one was found by building
# twice and comparing (docs/RELEASE.md).
#
# The binaries need, besides glibc and libstdc++ (on every Debian), only libsodium23 and libedit2
# (README, "Running a release binary"). The build cache is .build-release/ in this checkout.
set -euo pipefail
out=${1:?usage: scripts/release.sh OUTDIR [Package.resolved]}
pins=${2:-}
products=${RELEASE_PRODUCTS:-relay securechat simulator}
root=$(cd "$(dirname "$0")/.." && pwd -P)
mkdir -p "$out"
out=$(cd "$out" && pwd -P)
cd "$root"
[ -z "$pins" ] || pins=$(cd "$(dirname "$pins")" && pwd -P)/$(basename "$pins")

# ---- What is built: the commit, never the time -------------------------------------------------
version=$(tr -d '[:space:]' < VERSION)
commit=$(git rev-parse HEAD)
if [ -n "$(git status --porcelain -- Package.swift VERSION Sources)" ]; then
    # The sources differ from the commit: say so in --version rather than claim the commit.
    commit="${commit}-modified"
    echo "release: warning: uncommitted changes under Sources/ or Package.swift; the binaries" \
        "say ${commit} and are not reproducible from any commit" >&2
fi
# --version prints "VERSION (commit HASH)": Sources/CBuildInfo/build_info.c includes this header when
# it is on the include path (-I below). Both values depend on the commit alone, so they cannot break
# reproducibility; only [0-9A-Za-z.+-] is allowed, so they cannot break the C string either.
for value in "$version" "$commit"; do
    [[ "$value" =~ ^[0-9A-Za-z.+-]+$ ]] || { echo "release: unexpected characters in '$value'" >&2; exit 1; }
done
info_dir="$root/.build-release/release-info"
info="#define SECURECHAT_RELEASE_VERSION \"$version\"
#define SECURECHAT_RELEASE_COMMIT \"$commit\""
mkdir -p "$info_dir"
# Rewritten only when it changes: a new file date alone would recompile build_info.c and relink.
[ "$(cat "$info_dir/securechat_release_info.h" 2>/dev/null)" = "$info" ] \
    || echo "$info" > "$info_dir/securechat_release_info.h"
# The build's whole environment, so that nothing set in the caller's shell (CC, SDKROOT, SWIFT_EXEC,
# ...) can change the output: swift's directory and the system's on PATH, HOME (git's and SwiftPM's
# configuration), and:
# - SOURCE_DATE_EPOCH: any tool that stamps a date (clang's __DATE__/__TIME__, archivers) takes the
#   commit's instead of now. The two-build comparison found no timestamp in the binaries; this
#   keeps it that way.
# - LC_ALL=C, TZ=UTC: no locale- or zone-dependent output from any tool.
build_env=(
    env -i PATH="$(dirname "$(command -v swift)"):/usr/local/bin:/usr/bin:/bin" HOME="${HOME:-}"
    SOURCE_DATE_EPOCH="$(git log -1 --format=%ct HEAD)" LC_ALL=C TZ=UTC
)

# ---- Dependencies: pinned versions when given, else resolved and recorded -----------------------
resolve=()
if [ -n "$pins" ]; then
    cp "$pins" Package.resolved
    resolve=(--force-resolved-versions)  # exactly the given versions, or fail
fi

# ---- The build -----------------------------------------------------------------------------------
# Everything is compiled from absolute paths under $root (the sources and the dependencies'
# checkouts under .build-release/), so each flag that maps $root to "." removes the checkout's
# path from the output:
flags=(
    -c release
    --static-swift-stdlib        # libswiftCore & co. inside the binary: no Swift on the target
    --scratch-path "$root/.build-release"
    "${resolve[@]}"
    # The version header above (its path is on no output; only build_info.c includes it).
    -Xcc "-I$info_dir"
    # Swift: #file/#filePath strings (dependencies in Swift 5 mode) and any debug info.
    -Xswiftc -file-prefix-map -Xswiftc "$root=."
    # C/C++ (BoringSSL, CNIOLinux): __FILE__ in their error and assertion macros (BoringSSL puts
    # one in every OPENSSL_PUT_ERROR), __PRETTY_FUNCTION__ of lambdas, and any debug info.
    -Xcc "-ffile-prefix-map=$root=."
    # No Swift debug info: its compilation directories and file tables are the main carrier of
    # build paths, and a release binary has no use for it (a crash is reproduced from the commit).
    # (-g0 reaches the clang importer; SwiftPM's own -g after it still gives C files debug info,
    # with the mapped paths, which --strip-all below drops.)
    -Xswiftc -gnone -Xcc -g0
    # Each Swift object file carries a .swift_modhash section: an MD5 of its LLVM module, kept for
    # incremental code generation, and the module records its absolute source file name. 434 of
    # securechat's 692 hashes differed between two checkouts; a one-file module built with -gnone
    # and the path mapped still hashed differently at two paths, and identically with this off.
    -Xswiftc -Xfrontend -Xswiftc -disable-incremental-llvm-codegen
    # No debug sections and no symbol table in the output (smaller; the Swift runtime does not
    # need them).
    -Xlinker --strip-all
    # The build ID is a hash of the linked output, so equal inputs give an equal ID.
    -Xlinker --build-id=sha1
)
# Link order: SwiftPM passes the object files in a fixed order (a file list sorted by target and
# source path), and the libraries in the package's dependency order, so nothing to do here.

for product in $products; do
    echo "release: building $product ($version, commit $commit)" >&2
    # Through a pipe: on a terminal SwiftPM would add -color-diagnostics to every command, and
    # switching between a terminal and a pipe would recompile everything (not change the output).
    "${build_env[@]}" swift build "${flags[@]}" --product "$product" 2>&1 | cat >&2
done
bin=$("${build_env[@]}" swift build "${flags[@]}" --show-bin-path)

# ---- The output ------------------------------------------------------------------------------------
for product in $products; do
    rm -f "$out/$product"
    cp "$bin/$product" "$out/$product"
    chmod 0755 "$out/$product"
done
cp Package.resolved "$out/Package.resolved"
{
    echo "version=$version"
    echo "commit=$commit"
    echo "source_date_epoch=$(git log -1 --format=%ct HEAD)"
    echo "products=$products"
    echo "swift=$(swift --version 2>&1 | head -1)"
    echo "swift_path=$(command -v swift)"
    # The Debian packages whose headers and linker went into the build, with their versions.
    dpkg-query -W -f='debian=${Package} ${Version}\n' libc6-dev libsodium-dev libedit-dev libstdc++-12-dev \
        binutils 2>/dev/null || true
    echo "flags=${flags[*]//$root/ROOT}"
} > "$out/BUILDINFO"
(cd "$out" && sha256sum $products > SHA256SUMS)
echo "release: $out" >&2
cat "$out/SHA256SUMS"
