#define _GNU_SOURCE  // pipe2, wcwidth
#include "client_support.h"

#include <errno.h>
#include <fcntl.h>
#include <wchar.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
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
