// The version and commit a binary was built from, embedded at build time.
//
// How: scripts/release.sh exports SECURECHAT_RELEASE_VERSION and SECURECHAT_RELEASE_COMMIT; Package.swift
// reads them (Context.environment) and passes them to this one C file as -D macros, so nothing else is
// recompiled and no generated file ever lands in the source tree. The values depend only on the commit
// (VERSION file + `git rev-parse HEAD`), never on the time or the path, so the same commit still gives the
// same bytes. A plain `swift build` sets neither and says so honestly.
#include "build_info.h"

#if defined(SECURECHAT_RELEASE_VERSION) && defined(SECURECHAT_RELEASE_COMMIT)
static const char description[] = SECURECHAT_RELEASE_VERSION " (commit " SECURECHAT_RELEASE_COMMIT ")";
#else
static const char description[] = "development build (not made by scripts/release.sh; no commit recorded)";
#endif

const char *securechat_build_description(void) {
    return description;
}
