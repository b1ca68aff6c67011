/* prog.h — the program skeleton every filter uses.
 *
 *   int main(int argc, char **argv) {
 *       nnp_proginit(&argc, argv, &nnp_prog_NAME);   // --help, --version, -q, -v
 *       ... parse the remaining options ...
 *       nnp_refuse_tty_stdout();                     // when writing frames
 *       ...
 *       return nnp_close_stdout();
 *   }
 *
 * The program description (struct nnp_proginfo) is static data owned by main.
 * The run-time state (program name, verbosity) lives in one struct owned by
 * this module and set only by nnp_proginit (main owns it by calling it).
 */
#ifndef NNP_PROG_H
#define NNP_PROG_H

#include <stdio.h>
#include <stdnoreturn.h>

struct nnp_proginfo {
	const char *name;     /* "read" for nnp-read */
	const char *summary;  /* one line */
	const char *usage;    /* "nnp read [options] FILE..." lines */
	const char *options;  /* option help text (program specific) */
	const char *details;  /* longer description and examples, may be NULL */
};

/* Handle --help, --version, -q/--quiet, -v/--verbose, restore SIGPIPE, install
 * the signal handlers that remove temporary output files.  Removes the handled
 * arguments from argv. */
void nnp_proginit(int *argc, char **argv, const struct nnp_proginfo *info);

const char *nnp_progname(void);   /* "nnp-read" */
int nnp_quiet(void);              /* --quiet or NNP_QUIET set */
int nnp_verbose(void);

noreturn void nnp_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* For getopt_long's '?': names the offending argument (nnp_proginit sets
 * opterr = 0 so getopt itself prints nothing). */
noreturn void nnp_bad_option(char **argv);
/* Print "nnp-NAME: error: <msg>" for code and exit with the table's status. */
noreturn void nnp_die(int code);
noreturn void nnp_dief(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nnp_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void nnp_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));   /* unless --quiet */
void nnp_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));  /* only --verbose */

/* Exit 2 with a message if stdout is a terminal (frames are binary). */
void nnp_refuse_tty_stdout(void);
/* Exit 2 with the usage if stdin is a terminal and the program reads frames. */
void nnp_refuse_tty_stdin(void);
/* Flush and close stdout, report a write error; returns the exit status. */
int nnp_close_stdout(void);

/* Thread control: -j N / --threads N, else NNP_THREADS, else all cores. */
int nnp_threads_from_arg(const char *arg);  /* validates; exits 2 on bad value */
void nnp_threads_init(int n);               /* n <= 0: NNP_THREADS or default */
int nnp_threads(void);

/* Option parsing helpers: exit 2 with a clear message on bad values. */
long long nnp_parse_ll(const char *opt, const char *s, long long lo, long long hi);
double nnp_parse_double(const char *opt, const char *s);
/* "0", "123", "512K", "8M", "2.5G", "1T" (powers of 1024, any case) -> bytes. */
unsigned long long nnp_parse_size(const char *opt, const char *s);
/* Monotonic clock in seconds. */
double nnp_now(void);
/* The directory of this program's executable (/proc/self/exe) into dir;
 * "" when it cannot be found.  Siblings (nnp-NAME) are looked up there. */
void nnp_self_dir(char *dir, size_t n);
/* Run argv[0] (a path, or a name searched in PATH) with argv and wait:
 * its exit status (0..255; 128+signal when killed), or <0 with nnp_err
 * set when it cannot be started. */
int nnp_spawn_wait(char *const argv[]);
/* s quoted for a POSIX shell into buf ('...' with '\'' for quotes); bare:
 * leave a string of only safe characters unquoted.  NNP_EUSAGE (recorded)
 * when it does not fit in n bytes. */
int nnp_shell_quote(char *buf, size_t n, const char *s, int bare);
/* Physical memory in bytes (0 if unknown). */
unsigned long long nnp_phys_mem(void);

/* Progress on stderr only if it is a terminal and not --quiet. */
struct nnp_progress {
	const char *label;
	long long total, done;
	int active;
	double last;
};
void nnp_progress_begin(struct nnp_progress *p, const char *label, long long total);

/* The first failure of a parallel loop over n items, in index order: an
 * item after a recorded failure is skipped, and the loop reports the error
 * of the smallest failing index whatever the thread schedule. */
struct nnp_first_fail {
	size_t at;          /* the failing index, n: none */
	int rc;
	char msg[1024];
};
void nnp_first_fail_init(struct nnp_first_fail *f, size_t n);
/* 1 when an item before i has failed (i need not run). */
int nnp_first_fail_skip(const struct nnp_first_fail *f, size_t i);
/* Item i finished with rc (its message recorded if it failed); pr (may be
 * NULL) advances by one.  Thread-safe. */
void nnp_first_fail_done(struct nnp_first_fail *f, size_t i, int rc, struct nnp_progress *pr);
/* NNP_OK, or the first failure's code with its message recorded again. */
int nnp_first_fail_result(const struct nnp_first_fail *f);
void nnp_progress_add(struct nnp_progress *p, long long n);
void nnp_progress_end(struct nnp_progress *p);

#define NNP_VERSION "0.1.0"

#endif
