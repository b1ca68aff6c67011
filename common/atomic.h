/* atomic.h — output files that appear whole or not at all.
 *
 * nnp_atomic_open creates "DIR/.NAME.tmp.XXXXXX" with O_EXCL (same
 * directory, so rename is atomic); nnp_atomic_commit renames it over NAME;
 * nnp_atomic_abort unlinks it.  Open temp files are registered so that the
 * signal handlers installed by nnp_proginit remove them (the registry is the
 * module's only state; it is a fixed table, async-signal-safe to walk, and
 * taken under a lock, so threads may open and commit outputs concurrently).
 * Ownership: the struct is caller-owned; commit/abort release it.
 */
#ifndef NNP_ATOMIC_H
#define NNP_ATOMIC_H

#include <limits.h>
#include <stddef.h>

struct nnp_atomic {
	int fd;
	char path[PATH_MAX];
	char tmp[PATH_MAX];
	int slot;
};

/* force: replace an existing file; else an existing path is an error. */
int nnp_atomic_open(struct nnp_atomic *a, const char *path, int force);
int nnp_atomic_commit(struct nnp_atomic *a);   /* closes fd if >= 0 */
void nnp_atomic_abort(struct nnp_atomic *a);
/* Remove all registered temp files (signal handlers, atexit). */
void nnp_atomic_cleanup_all(void);

/* File-system predicates (stat follows links). */
int nnp_is_dir(const char *p);
int nnp_is_file(const char *p);
/* out = dir + "/" + name; NNP_EUSAGE when it does not fit. */
int nnp_path_join(char *out, size_t len, const char *dir, const char *name);

/* mkdir -p */
int nnp_mkdirs(const char *dir);
/* Copy file src to dst (same bytes, streamed), atomically; force: replace
 * an existing dst.  hardlink: try link(2) first (no copy on one file system). */
int nnp_copy_file(const char *src, const char *dst, int force, int hardlink);
/* Write the NUL-terminated text to path atomically (force: replace). */
int nnp_write_text_file(const char *path, const char *text, int force);
/* rm -r dir (no-op when it does not exist; symlinks are removed, not followed). */
int nnp_rmtree(const char *dir);
/* Write a whole buffer to fd, retrying on EINTR/short writes. */
int nnp_write_all(int fd, const void *buf, size_t n, const char *name);

#endif
