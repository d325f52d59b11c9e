// The version and commit a binary was built from, embedded at build time.
//
// How: scripts/release.sh writes securechat_release_info.h (two #defines: the VERSION file and
// `git rev-parse HEAD`) into a directory of its build cache and adds that directory to the include
// path (-Xcc -I). Only this file includes it, so a new commit recompiles this file and relinks,
// nothing else, and no generated file lands in the source tree. The values depend on the commit
// alone, never on the time or the path, so the same commit still gives the same bytes. A plain
// `swift build` has no such header and says so honestly. (Not an environment variable read by
// Package.swift: reading Context.environment makes SwiftPM re-plan the build on every run.)
#include "build_info.h"

#if __has_include("securechat_release_info.h")
#include "securechat_release_info.h"
#endif

#if defined(SECURECHAT_RELEASE_VERSION) && defined(SECURECHAT_RELEASE_COMMIT)
static const char description[] = SECURECHAT_RELEASE_VERSION " (commit " SECURECHAT_RELEASE_COMMIT ")";
#else
static const char description[] = "development build (not made by scripts/release.sh; no commit recorded)";
#endif

const char *securechat_build_description(void) {
    return description;
}
