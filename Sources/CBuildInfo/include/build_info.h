#ifndef SECURECHAT_BUILD_INFO_H
#define SECURECHAT_BUILD_INFO_H

/// What this binary was built from, for `--version`: "VERSION (commit HASH)" when scripts/release.sh
/// built it, "development build (...)" otherwise. A static string; never free it.
const char *securechat_build_description(void);

#endif
