/* test_tmpdir.h — a fresh directory for a unit test: $TMPDIR (else /tmp)/
 * nnp-test-NAME.<6 random characters>, made by mkdtemp into buf (n bytes).
 * Returns buf, or NULL (errno set) when it cannot be made.  The caller
 * removes it. */
#ifndef NNP_TEST_TMPDIR_H
#define NNP_TEST_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>

#define TEST_MKDTEMP_SUFFIX "XXXXXX"   /* mkdtemp's required template suffix */

static inline char *test_tmpdir(char *buf, size_t n, const char *name)
{
	const char *t = getenv("TMPDIR");
	if (snprintf(buf, n, "%s/nnp-test-%s.%s", t && *t ? t : "/tmp", name, TEST_MKDTEMP_SUFFIX) >= (int)n)
		return NULL;
	return mkdtemp(buf);
}

#endif
