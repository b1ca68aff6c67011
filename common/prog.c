/* prog.c — program skeleton: options every program shares, messages,
 * signals, TTY rules, threads and progress. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "atomic.h"
#include "err.h"
#include "prog.h"

/* The run-time state of the program; set by nnp_proginit, owned by main. */
static struct {
	char name[64];
	const struct nnp_proginfo *info;
	int quiet, verbose, threads;
} prog = { "nnp", NULL, 0, 0, 0 };

static const char exit_table[] =
	"Exit status:\n"
	"  0   success\n"
	"  1   bad, missing or inconsistent input data (or a failed verification)\n"
	"  2   usage error (unknown option, bad value, refused terminal I/O)\n"
	"  3   I/O error writing output or a system error\n"
	"  4   out of memory, or a size/memory limit would be exceeded\n"
	"  70  internal error (a bug: please report it)\n"
	"  141 killed by SIGPIPE (the reader of our output went away)\n";

static void print_help(const struct nnp_proginfo *in)
{
	printf("%s — %s\n\nUsage:\n%s\n", prog.name, in->summary, in->usage);
	if (in->options && *in->options)
		printf("\nOptions:\n%s", in->options);
	printf("\nCommon options:\n"
	       "  -h, --help       show this help and exit\n"
	       "  -V, --version    show the version and exit\n"
	       "  -q, --quiet      no progress or informational messages (or NNP_QUIET=1)\n"
	       "  -v, --verbose    more diagnostics on stderr\n");
	if (in->details && *in->details)
		printf("\n%s", in->details);
	printf("\n%s", exit_table);
}

static void on_fatal_signal(int sig)
{
	nnp_atomic_cleanup_all();
	signal(sig, SIG_DFL);
	raise(sig);
}

static void install_signals(void)
{
	sigset_t set;
	/* SIGPIPE: default action, unblocked (git common-init.c). */
	signal(SIGPIPE, SIG_DFL);
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	signal(SIGINT, on_fatal_signal);
	signal(SIGTERM, on_fatal_signal);
	signal(SIGHUP, on_fatal_signal);
}

void nnp_proginit(int *argc, char **argv, const struct nnp_proginfo *info)
{
	int out = 1;
	const char *q = getenv("NNP_QUIET");

	snprintf(prog.name, sizeof prog.name, "nnp-%s", info->name);
	prog.info = info;
	prog.quiet = q && *q && strcmp(q, "0") != 0;
	install_signals();
	atexit(nnp_atomic_cleanup_all);
	opterr = 0;
	for (int i = 1; i < *argc; i++) {
		const char *a = argv[i];
		if (!strcmp(a, "--")) {
			for (; i < *argc; i++)
				argv[out++] = argv[i];
			break;
		}
		if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			print_help(info);
			exit(nnp_close_stdout());
		} else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
			printf("%s (nnpipe) %s\n", prog.name, NNP_VERSION);
			exit(nnp_close_stdout());
		} else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) {
			prog.quiet = 1;
		} else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
			prog.verbose++;
		} else {
			argv[out++] = argv[i];
		}
	}
	argv[out] = NULL;
	*argc = out;
}

const char *nnp_progname(void) { return prog.name; }
int nnp_quiet(void) { return prog.quiet; }
int nnp_verbose(void) { return prog.verbose; }

static void vmsg(const char *kind, const char *fmt, va_list ap)
{
	fprintf(stderr, "%s: %s", prog.name, kind);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void nnp_usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg("error: ", fmt, ap);
	va_end(ap);
	fprintf(stderr, "Try '%s --help' for more information.\n", prog.name);
	exit(NNP_EXIT_USAGE);
}

void nnp_bad_option(char **argv)
{
	const char *a = optind > 0 ? argv[optind - 1] : "?";
	if (optopt && a && a[0] == '-' && a[1] != '-' && a[1] != optopt)
		nnp_usage_error("unknown option '-%c'", optopt);
	nnp_usage_error("unknown option or missing value: '%s'", a ? a : "?");
}

void nnp_die(int code)
{
	const char *m = nnp_err_msg();
	fprintf(stderr, "%s: error: %s\n", prog.name, *m ? m : "unknown error");
	exit(nnp_exit_code(code));
}

void nnp_dief(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg("error: ", fmt, ap);
	va_end(ap);
	exit(nnp_exit_code(code));
}

void nnp_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vmsg("warning: ", fmt, ap);
	va_end(ap);
}

void nnp_info(const char *fmt, ...)
{
	va_list ap;
	if (prog.quiet)
		return;
	va_start(ap, fmt);
	vmsg("", fmt, ap);
	va_end(ap);
}

void nnp_debug(const char *fmt, ...)
{
	va_list ap;
	if (!prog.verbose)
		return;
	va_start(ap, fmt);
	vmsg("debug: ", fmt, ap);
	va_end(ap);
}

void nnp_refuse_tty_stdout(void)
{
	if (isatty(STDOUT_FILENO))
		nnp_dief(NNP_EUSAGE, "refusing to write a binary frame stream to a terminal "
			 "(redirect to a file or pipe into another nnp program)");
}

void nnp_refuse_tty_stdin(void)
{
	if (isatty(STDIN_FILENO)) {
		fprintf(stderr, "%s: error: expects a frame stream on standard input, not a terminal\n"
			"Usage:\n%s\nTry '%s --help' for more information.\n",
			prog.name, prog.info ? prog.info->usage : "", prog.name);
		exit(NNP_EXIT_USAGE);
	}
}

int nnp_close_stdout(void)
{
	int err = fflush(stdout) != 0 || ferror(stdout);
	if (fclose(stdout) != 0)
		err = 1;
	if (err) {
		if (errno == EPIPE) {
			signal(SIGPIPE, SIG_DFL);
			raise(SIGPIPE);
		}
		fprintf(stderr, "%s: error: cannot write standard output: %s\n", prog.name,
			strerror(errno));
		return NNP_EXIT_IO;
	}
	return NNP_EXIT_OK;
}

long long nnp_parse_ll(const char *opt, const char *s, long long lo, long long hi)
{
	char *end;
	long long v;
	errno = 0;
	v = strtoll(s ? s : "", &end, 10);
	if (!s || !*s || *end || errno)
		nnp_usage_error("option '%s' needs an integer, not '%s'", opt, s ? s : "");
	if (v < lo || v > hi)
		nnp_usage_error("option '%s': %lld is out of range [%lld, %lld]", opt, v, lo, hi);
	return v;
}

double nnp_parse_double(const char *opt, const char *s)
{
	char *end;
	double v;
	errno = 0;
	v = strtod(s ? s : "", &end);
	if (!s || !*s || *end || errno || !isfinite(v))
		nnp_usage_error("option '%s' needs a number, not '%s'", opt, s ? s : "");
	return v;
}

unsigned long long nnp_parse_size(const char *opt, const char *s)
{
	char *end;
	double v, mul = 1;
	errno = 0;
	v = strtod(s ? s : "", &end);
	if (end && *end) {
		const char *u = "KMGT", *p = strchr(u, toupper((unsigned char)*end));
		if (!p || !*p || (end[1] && strcmp(end + 1, "B") && strcmp(end + 1, "iB")))
			nnp_usage_error("option '%s' needs a size such as 4G or 512M, not '%s'", opt, s);
		for (const char *q = u; q <= p; q++)
			mul *= 1024;
	}
	if (!s || !*s || errno || !isfinite(v) || v < 0 || v * mul > 1.8e19)
		nnp_usage_error("option '%s' needs a size such as 4G or 512M, not '%s'", opt, s ? s : "");
	return (unsigned long long)(v * mul);
}

unsigned long long nnp_phys_mem(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), psz = sysconf(_SC_PAGESIZE);
	return pages > 0 && psz > 0 ? (unsigned long long)pages * (unsigned long long)psz : 0;
}

int nnp_threads_from_arg(const char *arg)
{
	return (int)nnp_parse_ll("--threads", arg, 1, 4096);
}

void nnp_threads_init(int n)
{
	const char *e = getenv("NNP_THREADS");
	if (n <= 0 && e && *e) {
		char *end;
		long v = strtol(e, &end, 10);
		if (*end || v < 1 || v > 4096)
			nnp_dief(NNP_EUSAGE, "NNP_THREADS='%s' is not a thread count (1..4096)", e);
		n = (int)v;
	}
	if (n <= 0) {
		long c = sysconf(_SC_NPROCESSORS_ONLN);
		n = c > 0 ? (int)c : 1;
	}
	prog.threads = n;
#ifdef _OPENMP
	omp_set_num_threads(n);
#endif
}

int nnp_threads(void)
{
	return prog.threads > 0 ? prog.threads : 1;
}

double nnp_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void nnp_progress_begin(struct nnp_progress *p, const char *label, long long total)
{
	p->label = label;
	p->total = total;
	p->done = 0;
	p->active = !prog.quiet && isatty(STDERR_FILENO);
	p->last = 0;
}

static void progress_draw(struct nnp_progress *p)
{
	int width = 30, fill = p->total > 0 ? (int)(width * p->done / p->total) : 0;
	fprintf(stderr, "\r%s: %s [", prog.name, p->label);
	for (int i = 0; i < width; i++)
		fputc(i < fill ? '#' : ' ', stderr);
	fprintf(stderr, "] %lld/%lld", p->done, p->total);
	fflush(stderr);
}

void nnp_progress_add(struct nnp_progress *p, long long n)
{
	double t;
	p->done += n;
	if (!p->active)
		return;
	t = nnp_now();
	if (t - p->last < 0.1 && p->done < p->total)
		return;
	p->last = t;
	progress_draw(p);
}

void nnp_progress_end(struct nnp_progress *p)
{
	if (!p->active)
		return;
	progress_draw(p);
	fputc('\n', stderr);
	p->active = 0;
}

int nnp_shell_quote(char *buf, size_t n, const char *s, int bare)
{
	size_t k = 0;
	if (bare && *s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				   "0123456789/._-+:,=@%") == strlen(s)) {
		if (strlen(s) >= n)
			return nnp_err(NNP_EUSAGE, "argument too long for a command line");
		memcpy(buf, s, strlen(s) + 1);
		return NNP_OK;
	}
	if (n < 3)
		return nnp_err(NNP_EUSAGE, "argument too long for a command line");
	buf[k++] = '\'';
	for (; *s && k + 5 < n; s++) {
		if (*s == '\'') {
			memcpy(buf + k, "'\\''", 4);
			k += 4;
		} else {
			buf[k++] = *s;
		}
	}
	if (*s || k + 2 > n)
		return nnp_err(NNP_EUSAGE, "argument too long for a command line");
	buf[k++] = '\'';
	buf[k] = '\0';
	return NNP_OK;
}

int nnp_spawn_wait(char *const argv[])
{
	int st;
	pid_t pid;
	fflush(NULL);
	if ((pid = fork()) < 0)
		return nnp_err(NNP_EIO, "cannot start '%s': %s", argv[0], strerror(errno));
	if (pid == 0) {
		execvp(argv[0], argv);
		fprintf(stderr, "%s: error: cannot run '%s': %s\n", nnp_progname(), argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return nnp_err(NNP_EIO, "waiting for '%s': %s", argv[0], strerror(errno));
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

void nnp_self_dir(char *dir, size_t n)
{
	ssize_t k = readlink("/proc/self/exe", dir, n - 1);
	char *slash;
	if (k <= 0) {
		dir[0] = '\0';
		return;
	}
	dir[k] = '\0';
	slash = strrchr(dir, '/');
	if (slash)
		*slash = '\0';
}

void nnp_first_fail_init(struct nnp_first_fail *f, size_t n)
{
	f->at = n;
	f->rc = NNP_OK;
	f->msg[0] = '\0';
}

int nnp_first_fail_skip(const struct nnp_first_fail *f, size_t i)
{
	size_t at;
#pragma omp atomic read
	at = f->at;
	return at < i;
}

void nnp_first_fail_done(struct nnp_first_fail *f, size_t i, int rc, struct nnp_progress *pr)
{
#pragma omp critical(nnp_first_fail)
	{
		if (rc && i < f->at) {
			snprintf(f->msg, sizeof f->msg, "%s", nnp_err_msg());
			f->rc = rc;
#pragma omp atomic write
			f->at = i;
		}
		if (pr)
			nnp_progress_add(pr, 1);
	}
}

int nnp_first_fail_result(const struct nnp_first_fail *f)
{
	return f->rc ? nnp_err(f->rc, "%s", f->msg) : NNP_OK;
}
