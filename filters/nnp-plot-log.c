/* nnp-plot-log — re-plot a trainer's training_log.tsv as progress.png
 * (common/trainlog.h; docs/training-log.md). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "err.h"
#include "prog.h"
#include "trainlog.h"

static const struct nnp_proginfo info = {
	.name = "plot-log",
	.summary = "draw progress.png (loss, pseudo Dice, epoch time, learning rate) from a training log",
	.usage = "  nnp plot-log [options] TRAINING_LOG.tsv -o PROGRESS.png",
	.options =
		"  -o, --output FILE  the PNG to write ('-' = standard output, not a terminal)\n"
		"  -f, --force        replace an existing output file\n",
	.details =
		"Reads a training_log.tsv as the trainer writes it ('-' = standard input):\n"
		"columns epoch, train_loss, val_loss, dice_<class>..., mean_fg_dice,\n"
		"ema_fg_dice, lr, epoch_time_s, timestamp; 'nan' leaves a gap in a line.\n"
		"Writes the same 1200x1800 picture the trainer writes every epoch: three\n"
		"panels like nnU-Net's progress.png (losses on the left axis and the pseudo\n"
		"Dice with its moving average on the right axis; the epoch duration; the\n"
		"learning rate).  The file appears whole or not at all: nothing is left\n"
		"behind when the log cannot be read.  See docs/training-log.md.\n"
		"\n"
		"Examples:\n"
		"  nnp plot-log fold_0/training_log.tsv -o fold_0/progress.png --force\n"
		"  nnp plot-log training_log.tsv -o - | display\n",
};

struct cmdline {
	const char *input, *output;
	int force;
};

static void parse_cmdline(int argc, char **argv, struct cmdline *cl)
{
	static const struct option opts[] = {
		{ "output", required_argument, NULL, 'o' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	int c;
	memset(cl, 0, sizeof *cl);
	while ((c = getopt_long(argc, argv, ":o:f", opts, NULL)) != -1) {
		switch (c) {
		case 'o': cl->output = optarg; break;
		case 'f': cl->force = 1; break;
		case ':': nnp_usage_error("option '%s' needs a value", argv[optind - 1]);
		default: nnp_bad_option(argv);
		}
	}
	if (optind < argc)
		cl->input = argv[optind++];
	if (optind < argc)
		nnp_usage_error("unexpected argument '%s'", argv[optind]);
	if (!cl->input)
		nnp_usage_error("missing TRAINING_LOG.tsv ('-' for standard input)");
	if (!cl->output)
		nnp_usage_error("missing -o PROGRESS.png ('-' for standard output)");
}

static int write_stdout(const struct nnp_trainlog *log)
{
	unsigned char *png;
	size_t n;
	int rc;
	if ((rc = nnp_trainlog_png_encode(log, &png, &n)))
		return rc;
	/* a short write sets the stream's error flag: nnp_close_stdout reports it */
	(void)fwrite(png, 1, n, stdout);
	free(png);
	return NNP_OK;
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct nnp_trainlog log;
	int rc, to_stdout;

	nnp_proginit(&argc, argv, &info);
	parse_cmdline(argc, argv, &cl);
	to_stdout = !strcmp(cl.output, "-");
	if (to_stdout && isatty(STDOUT_FILENO))
		nnp_usage_error("refusing to write a PNG to a terminal (redirect it to a file)");
	if (!strcmp(cl.input, "-") && isatty(STDIN_FILENO))
		nnp_usage_error("expects a training log on standard input, not a terminal");
	if ((rc = nnp_trainlog_read_tsv(&log, cl.input)))
		nnp_die(rc);
	nnp_debug("'%s': %zu epochs, %zu classes", cl.input, log.n, log.nclasses);
	if (to_stdout)
		rc = write_stdout(&log);
	else
		rc = nnp_trainlog_write_png(&log, cl.output, cl.force);
	nnp_trainlog_release(&log);
	if (rc)
		nnp_die(rc);
	return nnp_close_stdout();
}
