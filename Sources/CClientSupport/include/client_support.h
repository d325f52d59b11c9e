#ifndef SECURECHAT_CLIENT_SUPPORT_H
#define SECURECHAT_CLIENT_SUPPORT_H

// C that the client shell needs and Swift cannot call directly: libedit's readline-compatible
// interface is built on mutable C globals and a callback without a context pointer (Swift 6
// strict concurrency refuses both), and prctl/ioctl are variadic. Each function is a one-liner
// over the C API; the state lives in client_support.c, in exactly one place.

#include <stddef.h>
#include <stdint.h>

// ---- libedit, readline-compatible callback interface ---------------------------------------

/// Configure libedit before first use: no signal handlers of its own (the client takes signals
/// through signalfd), no SIGWINCH handler, our program name for ~/.editrc.
void scl_editline_configure(void);

/// Install the line handler with `prompt` and draw the prompt (call again after each line).
void scl_editline_install(const char *prompt);

/// Remove the handler; libedit returns the terminal to the mode it found.
void scl_editline_remove(void);

/// Read one character from stdin (call when stdin is readable). Returns 0 while a line is still
/// being edited, 1 when a complete line is ready (`scl_editline_take_line`), 2 on end of input.
int scl_editline_read_char(void);

/// The completed line (malloc'd; the caller wipes and frees it), and clears the ready state.
char *scl_editline_take_line(void);

/// The line being edited: a pointer valid until the next libedit call, and its length in bytes.
const char *scl_editline_buffer(int *length);

/// The cursor's byte offset in the line being edited.
int scl_editline_point(void);

/// Redraw the prompt and the line being edited from the cursor's current position.
void scl_editline_redisplay(void);

/// The terminal was resized.
void scl_editline_resize(void);

/// Tab completion for the next lines: `completer` is called with the word before the cursor and
/// its start and end offsets in the line, and returns readline's match array (malloc'd: the
/// substitution, then the candidates, then NULL) or NULL for none (then nothing is completed,
/// not even file names). `word_breaks` ends words; `append` follows a unique completion.
/// `completer` NULL restores libedit's defaults (file-name completion).
void scl_editline_complete_with(char **(*completer)(const char *word, int start, int end), const char *word_breaks,
                                int append);

// ---- process and terminal ------------------------------------------------------------------

/// No core dumps: setrlimit(RLIMIT_CORE, 0) and prctl(PR_SET_DUMPABLE, 0) (which also stops
/// other processes of the same user from attaching with ptrace or reading /proc/PID/mem).
/// Returns 0, or -1 (errno set) when either call failed.
int scl_disable_core_dumps(void);

/// The soft RLIMIT_CORE, in bytes (for tests).
long long scl_core_limit(void);

/// prctl(PR_GET_DUMPABLE): 0 or 1, or -1 on error.
int scl_get_dumpable(void);

// ---- the command line as other users see it (/proc/PID/cmdline, ps) ------------------------

/// The process's own argv, captured before main (glibc passes argc and argv to .init_array
/// functions): the strings the kernel shows in /proc/PID/cmdline. Returns argc; `*argv` set.
int scl_process_argv(char ***argv);

/// Remove argument `index` (1...argc-1) from the memory /proc/PID/cmdline reads: the later
/// arguments move down over it and the freed end is zeroed (as setproctitle does). When the
/// strings are not contiguous (someone rewrote argv), the argument is zeroed in place instead.
/// Returns 0, or -1 for an index out of range.
int scl_process_argv_erase(int index);

// ---- locked memory (RLIMIT_MEMLOCK) --------------------------------------------------------

/// Raise the soft RLIMIT_MEMLOCK to the hard limit. Returns 0 or -1; `*soft` and `*hard` get the
/// limits afterwards in bytes, -1 meaning unlimited.
int scl_memlock_raise(long long *soft, long long *hard);

/// Whether `bytes` more can be locked now: maps, locks, unlocks and unmaps that much anonymous
/// memory (mlock counts against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK).
/// Returns 0 when it could, else the errno of the failure.
int scl_memlock_probe(size_t bytes);

/// VmLck of /proc/self/status in bytes (memory locked now), or -1.
long long scl_memlock_current(void);

/// The terminal's size for `fd` (ioctl TIOCGWINSZ). Returns 0 or -1.
int scl_window_size(int fd, int *columns, int *rows);

/// Block SIGINT, SIGTERM, SIGHUP, SIGQUIT and SIGWINCH in the calling thread (and so in every
/// thread it starts later) and return a signalfd that reads them (non-blocking, close-on-exec),
/// or -1. SIGPIPE is ignored.
int scl_signals_to_fd(void);

/// Read one signal number from a signalfd: the signal, 0 when none is pending, -1 on error.
int scl_signalfd_read(int fd);

/// Restore the default dispositions and unblock the signals (for child processes in tests).
void scl_signals_restore(void);

/// wcwidth(3) of one Unicode scalar in the current locale (-1 for non-printable).
int scl_wcwidth(uint32_t scalar);

/// pipe2(O_NONBLOCK | O_CLOEXEC). Returns 0 or -1.
int scl_pipe_nonblocking(int fds[2]);

/// Save the terminal settings of `fd` and restore them (and reset colours) if the process dies
/// from a fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE: a failed
/// precondition). The handler then re-raises the signal with the default action; core dumps are
/// off. The ordinary exit paths restore the terminal themselves.
void scl_terminal_restore_arm(int fd);

/// The terminal has been restored: the fatal-signal handlers no longer touch it.
void scl_terminal_restore_disarm(void);

/// glibc's mallopt: keep up to `trim_bytes` of freed heap memory instead of returning it to the
/// kernel, and serve allocations of `mmap_bytes` or more with mappings of their own. Returns 0
/// unless both were set. (malloc.h is not in Swift's Glibc module.)
int scl_malloc_keep_freed(int trim_bytes, int mmap_bytes);

// ---- files ---------------------------------------------------------------------------------

/// Start the kernel writing `count` bytes of `fd` from `offset` to disk (sync_file_range with
/// SYNC_FILE_RANGE_WRITE only, a GNU extension Swift's Glibc module leaves out). It waits for no
/// write to finish, though the caller does the submission and, on a device with a short queue,
/// sleeps for room in it. Waiting for none, it consumes no write error: those still reach the
/// `fsync` before a file takes its name. Returns 0 or an errno value.
int scl_write_out(int fd, long long offset, long long count);

/// Drop `count` bytes of `fd` from `offset` from the page cache where they are on disk already
/// (posix_fadvise POSIX_FADV_DONTNEED: dirty pages and pages under writeback are kept; nothing
/// waits). Returns 0 or an errno value.
int scl_drop_written(int fd, long long offset, long long count);

#endif
