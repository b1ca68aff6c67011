/* err.h — error codes and the error-message slot shared by the library.
 *
 * Invariants: every library function that can fail returns an int that is
 * NNP_OK (0) or one of the negative NNP_E* codes below, and records exactly
 * one message (where the error was detected) with nnp_err_set().  Callers
 * propagate the code without re-logging.  Only programs print the message
 * (nnp_die / nnp_err_report) and exit with nnp_exit_code(code).
 *
 * The message slot is thread-local, like errno: the one piece of global
 * state in the library, documented here.
 */
#ifndef NNP_ERR_H
#define NNP_ERR_H

#include <stdarg.h>

enum {
	NNP_OK = 0,
	NNP_EDATA = -1,     /* bad/missing/corrupt input data -> exit 1 */
	NNP_EUSAGE = -2,    /* bad command line or option values -> exit 2 */
	NNP_EIO = -3,       /* I/O failure writing output, system error -> exit 3 */
	NNP_ENOMEM = -4,    /* allocation failed or a resource cap/estimate hit -> exit 4 */
	NNP_EINTERNAL = -70 /* a bug -> exit 70 */
};

/* The documented exit-code table (docs/exit-codes.md, every --help). */
enum {
	NNP_EXIT_OK = 0,
	NNP_EXIT_DATA = 1,
	NNP_EXIT_USAGE = 2,
	NNP_EXIT_IO = 3,
	NNP_EXIT_RESOURCE = 4,
	NNP_EXIT_INTERNAL = 70
};

/* Record the message for an error and return code (so: return nnp_err(...)). */
int nnp_err(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int nnp_verr(int code, const char *fmt, va_list ap);
/* The last recorded message ("" if none). Valid until the next nnp_err. */
const char *nnp_err_msg(void);
/* Prefix the current message with "CONTEXT: " (e.g. a file name); returns code. */
int nnp_err_ctx(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void nnp_err_clear(void);
/* malloc'ed formatted string / copy; NULL with NNP_ENOMEM recorded. */
char *nnp_strprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *nnp_strdup(const char *s);

/* Map an NNP_E* code to the exit status in the table above. */
int nnp_exit_code(int code);

#endif
