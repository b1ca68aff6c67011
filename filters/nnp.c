/* nnp — git-style dispatcher: 'nnp NAME ARGS' runs nnp-NAME (a filter or a
 * pipeline) from this program's directory, else from PATH. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "prog.h"

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void list_commands(const char *dir)
{
	DIR *d = opendir(dir);
	char *names[512];
	size_t n = 0;
	struct dirent *e;
	if (!d)
		return;
	while ((e = readdir(d)) && n < 512)
		if (!strncmp(e->d_name, "nnp-", 4))
			names[n++] = strdup(e->d_name + 4);
	closedir(d);
	qsort(names, n, sizeof *names, cmp_str);
	for (size_t i = 0; i < n; i++) {
		printf("  %s\n", names[i]);
		free(names[i]);
	}
}

static void usage(const char *dir)
{
	printf("nnp — nnU-Net v2 as composable Unix filters (nnpipe %s)\n\n"
	       "Usage: nnp COMMAND [ARGS...]     runs nnp-COMMAND\n"
	       "       nnp help [COMMAND]        this list, or COMMAND --help\n"
	       "       nnp --version\n\nCommands:\n", NNP_VERSION);
	list_commands(dir);
	printf("\nEvery command takes --help. Exit status: 0 ok, 1 data error, 2 usage,\n"
	       "3 I/O error, 4 resource limit, 70 internal error (docs/exit-codes.md).\n");
}

static int valid_name(const char *s)
{
	if (!*s || *s == '-')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '-' || *s == '_'))
			return 0;
	return 1;
}

static void run(const char *dir, const char *cmd, char **argv)
{
	char path[PATH_MAX], prog[128];
	snprintf(prog, sizeof prog, "nnp-%s", cmd);
	argv[0] = prog;
	if (dir[0] && snprintf(path, sizeof path, "%s/%s", dir, prog) < (int)sizeof path &&
	    access(path, X_OK) == 0) {
		execv(path, argv);
		fprintf(stderr, "nnp: error: cannot run '%s': %s\n", path, strerror(errno));
		exit(70);
	}
	execvp(prog, argv);
	if (errno == ENOENT) {
		fprintf(stderr, "nnp: error: '%s' is not an nnp command; see 'nnp help'\n", cmd);
		exit(2);
	}
	fprintf(stderr, "nnp: error: cannot run '%s': %s\n", prog, strerror(errno));
	exit(70);
}

int main(int argc, char **argv)
{
	char dir[PATH_MAX];
	nnp_self_dir(dir, sizeof dir);
	if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
	    (!strcmp(argv[1], "help") && argc == 2)) {
		usage(dir);
		return argc < 2 ? 2 : 0;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V")) {
		printf("nnp (nnpipe) %s\n", NNP_VERSION);
		return 0;
	}
	if (!strcmp(argv[1], "help")) {
		static char help[] = "--help";
		char *args[3] = { NULL, help, NULL };
		if (!valid_name(argv[2])) {
			fprintf(stderr, "nnp: error: '%s' is not an nnp command; see 'nnp help'\n", argv[2]);
			return 2;
		}
		run(dir, argv[2], args);
	}
	if (!valid_name(argv[1])) {
		fprintf(stderr, "nnp: error: '%s' is not an nnp command; see 'nnp help'\n", argv[1]);
		return 2;
	}
	run(dir, argv[1], argv + 1);
	return 70;
}
