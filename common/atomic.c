/* atomic.c — temp-then-rename output files with signal-time cleanup. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "atomic.h"
#include "err.h"

#define SLOTS 64
/* Registered temp paths; written only outside signal handlers (under one
 * OpenMP critical section, so threads may open and commit outputs
 * concurrently), read by nnp_atomic_cleanup_all (which may run in a handler). */
static char slot_path[SLOTS][PATH_MAX];
static volatile sig_atomic_t slot_used[SLOTS];

static int slot_take(const char *tmp)
{
	int got = -1;
#pragma omp critical(nnp_atomic_slots)
	for (int i = 0; i < SLOTS && got < 0; i++) {
		if (!slot_used[i]) {
			snprintf(slot_path[i], PATH_MAX, "%s", tmp);
			slot_used[i] = 1;
			got = i;
		}
	}
	return got;
}

static void slot_drop(int i)
{
	if (i < 0 || i >= SLOTS)
		return;
#pragma omp critical(nnp_atomic_slots)
	slot_used[i] = 0;
}

void nnp_atomic_cleanup_all(void)
{
	for (int i = 0; i < SLOTS; i++)
		if (slot_used[i])
			unlink(slot_path[i]);
}

static void split_dir(const char *path, char *dir, size_t dlen, const char **base)
{
	const char *slash = strrchr(path, '/');
	if (!slash) {
		snprintf(dir, dlen, ".");
		*base = path;
	} else if (slash == path) {
		snprintf(dir, dlen, "/");
		*base = slash + 1;
	} else {
		snprintf(dir, dlen, "%.*s", (int)(slash - path), path);
		*base = slash + 1;
	}
}

int nnp_atomic_open(struct nnp_atomic *a, const char *path, int force)
{
	char dir[PATH_MAX];
	const char *base;
	struct stat st;

	a->fd = -1;
	a->slot = -1;
	a->tmp[0] = '\0';
	if (strlen(path) + 32 >= PATH_MAX)
		return nnp_err(NNP_EUSAGE, "output path too long: '%s'", path);
	if (!force && stat(path, &st) == 0)
		return nnp_err(NNP_EUSAGE, "'%s' exists (use --force to overwrite)", path);
	split_dir(path, dir, sizeof dir, &base);
	if (!*base)
		return nnp_err(NNP_EUSAGE, "output path '%s' names a directory", path);
	snprintf(a->path, sizeof a->path, "%s", path);
	for (int tries = 0; tries < 100; tries++) {
		/* keep the extension last: nifti writers key on it */
		int k = snprintf(a->tmp, sizeof a->tmp, "%s/.tmp%ld.%d.%s", dir, (long)getpid(),
				 rand() % 1000000, base);
		if (k < 0 || (size_t)k >= sizeof a->tmp)
			return nnp_err(NNP_EUSAGE, "output path too long: '%s'", path);
		a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (a->fd >= 0)
			break;
		if (errno != EEXIST)
			return nnp_err(NNP_EIO, "cannot create '%s': %s", a->tmp, strerror(errno));
	}
	if (a->fd < 0)
		return nnp_err(NNP_EIO, "cannot create a temporary file next to '%s'", path);
	a->slot = slot_take(a->tmp);
	return NNP_OK;
}

int nnp_atomic_commit(struct nnp_atomic *a)
{
	int rc = NNP_OK;
	if (a->fd >= 0 && close(a->fd) != 0)
		rc = nnp_err(NNP_EIO, "cannot write '%s': %s", a->path, strerror(errno));
	a->fd = -1;
	if (rc == NNP_OK && rename(a->tmp, a->path) != 0)
		rc = nnp_err(NNP_EIO, "cannot rename '%s' to '%s': %s", a->tmp, a->path,
			     strerror(errno));
	if (rc != NNP_OK)
		unlink(a->tmp);
	slot_drop(a->slot);
	a->slot = -1;
	return rc;
}

void nnp_atomic_abort(struct nnp_atomic *a)
{
	if (a->fd >= 0)
		close(a->fd);
	a->fd = -1;
	if (a->tmp[0])
		unlink(a->tmp);
	slot_drop(a->slot);
	a->slot = -1;
	a->tmp[0] = '\0';
}

int nnp_is_dir(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int nnp_is_file(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int nnp_path_join(char *out, size_t len, const char *dir, const char *name)
{
	int k = snprintf(out, len, "%s/%s", dir, name);
	if (k < 0 || (size_t)k >= len)
		return nnp_err(NNP_EUSAGE, "path too long: '%s/%s'", dir, name);
	return NNP_OK;
}

int nnp_mkdirs(const char *dir)
{
	char buf[PATH_MAX];
	size_t n = strlen(dir);
	if (n == 0 || n >= sizeof buf)
		return nnp_err(NNP_EUSAGE, "bad directory name '%s'", dir);
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] == '/' || buf[i] == '\0') {
			char c = buf[i];
			buf[i] = '\0';
			if (mkdir(buf, 0777) != 0 && errno != EEXIST)
				return nnp_err(NNP_EIO, "cannot create directory '%s': %s", buf,
					       strerror(errno));
			buf[i] = c;
		}
	}
	return NNP_OK;
}

int nnp_write_all(int fd, const void *buf, size_t n, const char *name)
{
	const char *p = buf;
	while (n > 0) {
		ssize_t k = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
		if (k < 0) {
			if (errno == EINTR)
				continue;
			return nnp_err(NNP_EIO, "cannot write '%s': %s", name, strerror(errno));
		}
		p += k;
		n -= (size_t)k;
	}
	return NNP_OK;
}

int nnp_copy_file(const char *src, const char *dst, int force, int hardlink)
{
	struct nnp_atomic a;
	char buf[1 << 16];
	int in, rc = NNP_OK;
	if (hardlink && !force && link(src, dst) == 0)
		return NNP_OK;
	if ((in = open(src, O_RDONLY | O_CLOEXEC)) < 0)
		return nnp_err(NNP_EDATA, "cannot open '%s': %s", src, strerror(errno));
	if ((rc = nnp_atomic_open(&a, dst, force))) {
		close(in);
		return rc;
	}
	for (;;) {
		ssize_t k = read(in, buf, sizeof buf);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			rc = nnp_err(NNP_EDATA, "cannot read '%s': %s", src, strerror(errno));
			break;
		}
		if (k == 0 || (rc = nnp_write_all(a.fd, buf, (size_t)k, dst)))
			break;
	}
	close(in);
	if (rc) {
		nnp_atomic_abort(&a);
		return rc;
	}
	return nnp_atomic_commit(&a);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return (flag == FTW_DP ? rmdir(path) : unlink(path)) ? -1 : 0;
}

int nnp_rmtree(const char *dir)
{
	struct stat st;
	if (lstat(dir, &st) != 0)
		return errno == ENOENT ? NNP_OK : nnp_err(NNP_EIO, "cannot remove '%s': %s", dir, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return unlink(dir) ? nnp_err(NNP_EIO, "cannot remove '%s': %s", dir, strerror(errno)) : NNP_OK;
	if (nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS) != 0)
		return nnp_err(NNP_EIO, "cannot remove '%s': %s", dir, strerror(errno));
	return NNP_OK;
}

int nnp_write_text_file(const char *path, const char *text, int force)
{
	struct nnp_atomic a;
	int rc;
	if ((rc = nnp_atomic_open(&a, path, force)))
		return rc;
	if ((rc = nnp_write_all(a.fd, text, strlen(text), path))) {
		nnp_atomic_abort(&a);
		return rc;
	}
	return nnp_atomic_commit(&a);
}
