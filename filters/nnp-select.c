/* nnp-select — keep the frames of a stream whose role (and case) match. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "err.h"
#include "frame.h"
#include "prog.h"

static const struct nnp_proginfo info = {
	.name = "select",
	.summary = "keep only the frames of a stream with the given roles or cases",
	.usage = "  nnp select [--role R[,R...]] [--case ID[,ID...]] [--invert] [STREAM]",
	.options = "      --role R,...   frames whose role is one of these (image, label, logits, seg, ...)\n"
		   "      --case ID,...  frames of these cases\n"
		   "      --invert       drop the matching frames instead, keep the others\n",
	.details = "A frame matches when it passes every filter given (no filter: every frame\n"
		   "matches). The kept frames are copied unchanged, the others skipped without being\n"
		   "decoded. Example: the image of a preprocessed case file for inference:\n"
		   "  nnp select --role image CASE.nnp | nnp infer -m MODEL | nnp export | nnp write -o out/\n",
};

struct cmdline {
	const char *in;
	char *roles, *cases;
	int invert;
};

/* Is word one of the comma-separated entries of list? */
static int in_list(const char *list, const char *word)
{
	size_t n = strlen(word);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncmp(p, word, n))
			return 1;
		p = e ? e + 1 : NULL;
	}
	return 0;
}

static int matches(const struct cmdline *cl, const struct nnp_frame *f)
{
	int m = (!cl->roles || in_list(cl->roles, f->role)) &&
		(!cl->cases || (f->case_id && in_list(cl->cases, f->case_id)));
	return cl->invert ? !m : m;
}

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	enum { OPT_ROLE = 256, OPT_CASE };
	static const struct option opts[] = { { "role", required_argument, NULL, OPT_ROLE },
					      { "case", required_argument, NULL, OPT_CASE },
					      { "invert", no_argument, NULL, 'x' },
					      { NULL, 0, NULL, 0 } };
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case OPT_ROLE: cl->roles = optarg; break;
		case OPT_CASE: cl->cases = optarg; break;
		case 'x': cl->invert = 1; break;
		default: nnp_bad_option(argv);
		}
	}
	if (argc - optind > 1)
		nnp_usage_error("at most one input stream");
	cl->in = optind < argc ? argv[optind] : "-";
}

static int run(const struct cmdline *cl, struct nnp_reader *r, struct nnp_writer *w)
{
	struct nnp_frame f;
	int rc;
	while ((rc = nnp_reader_next(r, &f)) == 1) {
		if (matches(cl, &f)) {
			struct nnp_vol v;
			nnp_vol_init(&v);
			v.f = f;
			rc = nnp_reader_payload(r, &v);
			if (!rc)
				rc = nnp_writer_volume(w, &v);
			nnp_vol_release(&v);
		} else {
			rc = nnp_reader_skip(r);
			nnp_frame_release(&f);
		}
		if (rc < 0)
			return rc;
	}
	return rc;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_reader *r;
	struct nnp_writer *w;
	int rc;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	if (!strcmp(cl.in, "-"))
		nnp_refuse_tty_stdin();
	nnp_refuse_tty_stdout();
	if (!(r = nnp_reader_open(cl.in)) || !(w = nnp_writer_fd(STDOUT_FILENO, "<stdout>")))
		nnp_die(NNP_EDATA);
	rc = run(&cl, r, w);
	if (!rc)
		rc = nnp_writer_flush(w);
	nnp_reader_free(r);
	nnp_writer_free(w);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
