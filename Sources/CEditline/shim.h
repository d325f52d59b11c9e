#ifndef SECURECHAT_CEDITLINE_SHIM_H
#define SECURECHAT_CEDITLINE_SHIM_H

// libedit (BSD licence) as Debian ships it (`libedit-dev`), through its readline-compatible
// interface. GNU readline would be the obvious choice but is GPL; libedit's callback interface
// (`rl_callback_handler_install` + `rl_callback_read_char`) is what the client needs.
//
// Swift code does not include this directly: libedit's interface is mostly C globals, which
// Swift 6 treats as unsafe shared mutable state, so `CClientSupport` wraps what we use.
#include <stdio.h>
#include <editline/readline.h>

#endif
