/* err.c — the thread-local error-message slot (see err.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "err.h"

#define ERRMAX 1024
static _Thread_local char errbuf[ERRMAX];

int nnp_verr(int code, const char *fmt, va_list ap)
{
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	return code;
}

int nnp_err(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	nnp_verr(code, fmt, ap);
	va_end(ap);
	return code;
}

int nnp_err_ctx(int code, const char *fmt, ...)
{
	char ctx[512], old[ERRMAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof ctx, fmt, ap);
	va_end(ap);
	memcpy(old, errbuf, sizeof old);
	if (snprintf(errbuf, sizeof errbuf, "%s: %s", ctx, old) < 0)
		errbuf[0] = '\0';
	return code;
}

const char *nnp_err_msg(void)
{
	return errbuf;
}

void nnp_err_clear(void)
{
	errbuf[0] = '\0';
}

int nnp_exit_code(int code)
{
	switch (code) {
	case NNP_OK: return NNP_EXIT_OK;
	case NNP_EDATA: return NNP_EXIT_DATA;
	case NNP_EUSAGE: return NNP_EXIT_USAGE;
	case NNP_EIO: return NNP_EXIT_IO;
	case NNP_ENOMEM: return NNP_EXIT_RESOURCE;
	default: return NNP_EXIT_INTERNAL;
	}
}

char *nnp_strprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	int n;
	va_start(ap, fmt);
	n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0) {
		nnp_err(NNP_ENOMEM, "out of memory");
		return NULL;
	}
	return s;
}

char *nnp_strdup(const char *s)
{
	char *t = strdup(s);
	if (!t)
		nnp_err(NNP_ENOMEM, "out of memory");
	return t;
}
