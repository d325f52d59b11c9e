#define _GNU_SOURCE  // pipe2, wcwidth, sync_file_range
#include "client_support.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <wchar.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <editline/readline.h>

// ---- libedit --------------------------------------------------------------------------------

// The line callback has no context pointer, so its result waits here until Swift takes it.
// Only the client's single UI thread calls these functions.
static char *completed_line = NULL;
static int line_state = 0;  // 0 editing, 1 line ready, 2 end of input

static void line_handler(char *line) {
    if (line == NULL) {
        line_state = 2;
        return;
    }
    completed_line = line;
    line_state = 1;
}

void scl_editline_configure(void) {
    rl_readline_name = "securechat";
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
}

void scl_editline_install(const char *prompt) {
    rl_callback_handler_install(prompt, line_handler);
}

void scl_editline_remove(void) {
    rl_callback_handler_remove();
}

int scl_editline_read_char(void) {
    if (line_state == 0) rl_callback_read_char();
    return line_state;
}

char *scl_editline_take_line(void) {
    char *line = completed_line;
    completed_line = NULL;
    if (line_state == 1) line_state = 0;
    return line;
}

const char *scl_editline_buffer(int *length) {
    *length = rl_end;
    return rl_line_buffer;
}

int scl_editline_point(void) {
    return rl_point;
}

void scl_editline_redisplay(void) {
    rl_forced_update_display();
}

void scl_editline_resize(void) {
    rl_resize_terminal();
}

// Completion: libedit calls the attempted-completion function without a context pointer, so the
// Swift completer waits here. libedit's defaults are kept to restore them afterwards.
static char **(*word_completer)(const char *, int, int) = NULL;
static const char *default_word_breaks = NULL;
static int default_append = ' ';
static char word_breaks_buffer[16];

static char **attempt_completion(const char *word, int start, int end) {
    char **matches = word_completer != NULL ? word_completer(word, start, end) : NULL;
    // Without this, libedit falls back to completing file names.
    if (matches == NULL) rl_attempted_completion_over = 1;
    return matches;
}

void scl_editline_complete_with(char **(*completer)(const char *, int, int), const char *word_breaks, int append) {
    if (default_word_breaks == NULL) {
        default_word_breaks = rl_basic_word_break_characters;
        default_append = rl_completion_append_character;
    }
    if (completer == NULL) {
        word_completer = NULL;
        rl_attempted_completion_function = NULL;
        rl_basic_word_break_characters = default_word_breaks;
        rl_completion_append_character = default_append;
        return;
    }
    snprintf(word_breaks_buffer, sizeof word_breaks_buffer, "%s", word_breaks);
    word_completer = completer;
    rl_attempted_completion_function = attempt_completion;
    rl_basic_word_break_characters = word_breaks_buffer;
    rl_completion_append_character = append;
}

// ---- process and terminal -------------------------------------------------------------------

int scl_disable_core_dumps(void) {
    struct rlimit none = {0, 0};
    int limited = setrlimit(RLIMIT_CORE, &none);
    int undumpable = prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return (limited == 0 && undumpable == 0) ? 0 : -1;
}

long long scl_core_limit(void) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_CORE, &limit) != 0) return -1;
    return (long long)limit.rlim_cur;
}

int scl_get_dumpable(void) {
    return prctl(PR_GET_DUMPABLE, 0, 0, 0, 0);
}

// ---- argv -----------------------------------------------------------------------------------

static int process_argc = 0;
static char **process_argv = NULL;

// glibc calls .init_array functions with (argc, argv, envp) before main, with the kernel's argv:
// the strings /proc/PID/cmdline reads (Swift's runtime captures its CommandLine the same way).
static void capture_argv(int argc, char **argv, char **envp) {
    (void)envp;
    process_argc = argc;
    process_argv = argv;
}

__attribute__((section(".init_array"), used)) static void (*const capture_argv_entry)(int, char **, char **) =
    capture_argv;

int scl_process_argv(char ***argv) {
    *argv = process_argv;
    return process_argc;
}

int scl_process_argv_erase(int index) {
    if (process_argv == NULL || index < 1 || index >= process_argc) return -1;
    // The kernel lays the strings out back to back: argv[0] NUL argv[1] NUL ... (the area
    // /proc/PID/cmdline shows). Check that nobody has rewritten them.
    int contiguous = 1;
    for (int i = 1; i < process_argc; i++) {
        if (process_argv[i] != process_argv[i - 1] + strlen(process_argv[i - 1]) + 1) contiguous = 0;
    }
    char *gone = process_argv[index];
    size_t gone_length = strlen(gone) + 1;
    if (!contiguous) {
        memset(gone, 0, gone_length - 1);
        return 0;
    }
    char *last = process_argv[process_argc - 1];
    char *end = last + strlen(last) + 1;
    char *rest = gone + gone_length;
    size_t rest_length = (size_t)(end - rest);
    memmove(gone, rest, rest_length);
    memset(gone + rest_length, 0, gone_length);
    for (int i = index; i < process_argc - 1; i++) process_argv[i] = process_argv[i + 1] - gone_length;
    process_argv[process_argc - 1] = NULL;
    process_argc -= 1;
    return 0;
}

// ---- locked memory --------------------------------------------------------------------------

static long long limit_bytes(rlim_t value) {
    return value == RLIM_INFINITY ? -1 : (long long)value;
}

int scl_memlock_raise(long long *soft, long long *hard) {
    struct rlimit limit;
    if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return -1;
    int result = 0;
    if (limit.rlim_cur != limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        result = setrlimit(RLIMIT_MEMLOCK, &limit);
        if (getrlimit(RLIMIT_MEMLOCK, &limit) != 0) return -1;
    }
    *soft = limit_bytes(limit.rlim_cur);
    *hard = limit_bytes(limit.rlim_max);
    return result;
}

int scl_memlock_probe(size_t bytes) {
    if (bytes == 0) return 0;
    void *region = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (region == MAP_FAILED) return errno;
    int result = mlock(region, bytes) == 0 ? 0 : errno;
    if (result == 0) munlock(region, bytes);
    munmap(region, bytes);
    return result;
}

long long scl_memlock_current(void) {
    FILE *status = fopen("/proc/self/status", "re");
    if (status == NULL) return -1;
    char line[256];
    long long kibibytes = -1;
    // Bounded by the file (a few dozen lines).
    while (fgets(line, sizeof line, status) != NULL) {
        if (sscanf(line, "VmLck: %lld kB", &kibibytes) == 1) break;
    }
    fclose(status);
    return kibibytes < 0 ? -1 : kibibytes * 1024;
}

int scl_window_size(int fd, int *columns, int *rows) {
    struct winsize size;
    if (ioctl(fd, TIOCGWINSZ, &size) != 0) return -1;
    *columns = size.ws_col;
    *rows = size.ws_row;
    return 0;
}

static void handled_signals(sigset_t *set) {
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGHUP);
    sigaddset(set, SIGQUIT);
    sigaddset(set, SIGWINCH);
}

int scl_signals_to_fd(void) {
    sigset_t set;
    handled_signals(&set);
    signal(SIGPIPE, SIG_IGN);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0) return -1;
    return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

int scl_signalfd_read(int fd) {
    struct signalfd_siginfo info;
    ssize_t count = read(fd, &info, sizeof info);
    if (count == (ssize_t)sizeof info) return (int)info.ssi_signo;
    if (count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
    return -1;
}

void scl_signals_restore(void) {
    sigset_t set;
    handled_signals(&set);
    signal(SIGPIPE, SIG_DFL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

int scl_wcwidth(uint32_t scalar) {
    return wcwidth((wchar_t)scalar);
}

int scl_pipe_nonblocking(int fds[2]) {
    return pipe2(fds, O_NONBLOCK | O_CLOEXEC);
}

// ---- terminal restore on a fatal signal ---------------------------------------------------

static struct termios saved_terminal;
static volatile sig_atomic_t restore_fd = -1;
static const int fatal_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGABRT, SIGFPE};

static void restore_and_reraise(int signal_number) {
    // Only async-signal-safe calls: tcsetattr, write, signal, raise.
    int fd = restore_fd;
    if (fd >= 0) {
        static const char reset[] = "\033[0m\r\n";
        tcsetattr(fd, TCSANOW, &saved_terminal);
        ssize_t ignored = write(STDOUT_FILENO, reset, sizeof reset - 1);
        (void)ignored;
    }
    signal(signal_number, SIG_DFL);
    raise(signal_number);
}

void scl_terminal_restore_arm(int fd) {
    if (tcgetattr(fd, &saved_terminal) != 0) return;
    restore_fd = fd;
    for (size_t i = 0; i < sizeof fatal_signals / sizeof fatal_signals[0]; i++) {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_handler = restore_and_reraise;
        sigemptyset(&action.sa_mask);
        action.sa_flags = SA_RESETHAND;
        sigaction(fatal_signals[i], &action, NULL);
    }
}

void scl_terminal_restore_disarm(void) {
    restore_fd = -1;
}

int scl_malloc_keep_freed(int trim_bytes, int mmap_bytes) {
    return mallopt(M_TRIM_THRESHOLD, trim_bytes) == 1 && mallopt(M_MMAP_THRESHOLD, mmap_bytes) == 1 ? 0 : -1;
}

int scl_write_out(int fd, long long offset, long long count) {
    return sync_file_range(fd, offset, count, SYNC_FILE_RANGE_WRITE) == 0 ? 0 : errno;
}

int scl_drop_written(int fd, long long offset, long long count) {
    return posix_fadvise(fd, offset, count, POSIX_FADV_DONTNEED);
}
