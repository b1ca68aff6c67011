/* trainlog.h — the trainer's per-epoch log: training_log.tsv and progress.png,
 * nnU-Net's nnUNetLogger (nnunet-facts §7.6; docs/training-log.md).
 *
 * Invariants: a struct nnp_trainlog holds n records for the epochs 0..n-1 in
 * order (rec[i].epoch == i) and, per record, nclasses foreground pseudo Dice
 * values (dice[i * nclasses + c]; NaN where a class never occurred in the
 * validation batches).  Any double of a record may be NaN or infinite; the
 * writers keep them ("nan", "inf", "-inf") and the plot leaves a gap there.
 * Class names, when given, are stored sanitised (see nnp_trainlog_init) so
 * that a log written and read back has the same names.  At most
 * NNP_TRAINLOG_MAX_EPOCHS records and NNP_TRAINLOG_MAX_CLASSES classes.
 *
 * Ownership: struct nnp_trainlog owns its arrays and names; release it with
 * nnp_trainlog_release (a no-op on a zeroed or released struct).  Functions
 * never take ownership of const pointers; buffers they return through
 * `char **` / `unsigned char **` are malloc'ed and freed by the caller.
 *
 * Errors: NNP_OK or a negative NNP_E* with one message recorded (err.h).
 */
#ifndef NNP_TRAINLOG_H
#define NNP_TRAINLOG_H

#include <stddef.h>

#define NNP_TRAINLOG_TSV "training_log.tsv"
#define NNP_TRAINLOG_PNG "progress.png"
#define NNP_TRAINLOG_MAX_EPOCHS 1000000
#define NNP_TRAINLOG_MAX_CLASSES 1024
#define NNP_TRAINLOG_NAME_MAX 64       /* bytes of a class name (longer: cut) */
#define NNP_TRAINLOG_EMA_KEEP 0.9      /* ema = 0.9 * previous + 0.1 * mean */

/* One epoch. timestamp: the epoch's start, seconds since the Unix epoch. */
struct nnp_trainlog_rec {
	int epoch;
	double train_loss, val_loss;
	double mean_fg_dice, ema_fg_dice;
	double lr;
	double epoch_time_s;
	double timestamp;
};

struct nnp_trainlog {
	size_t nclasses;               /* K foreground classes (or regions) */
	char **names;                  /* K names, or NULL: columns dice_1..dice_K */
	size_t n, cap;                 /* records held / allocated */
	struct nnp_trainlog_rec *rec;  /* n records */
	double *dice;                  /* n * K values, row-major */
};

/* ---- records ---- */

/* An empty log for nclasses (0..NNP_TRAINLOG_MAX_CLASSES) classes.  names:
 * NULL or nclasses non-empty strings; each is copied with every byte that is
 * not [A-Za-z0-9._+-] replaced by '_' and cut to NNP_TRAINLOG_NAME_MAX. */
int nnp_trainlog_init(struct nnp_trainlog *log, size_t nclasses, const char *const *names);
void nnp_trainlog_release(struct nnp_trainlog *log);

/* Add the record r (with its nclasses Dice values; dice may be NULL when
 * nclasses is 0).  r->epoch == n appends; r->epoch < n first drops the
 * records from r->epoch on (a resumed run logging an epoch again replaces
 * it and what followed); r->epoch > n or < 0 is NNP_EINTERNAL (a gap). */
int nnp_trainlog_append(struct nnp_trainlog *log, const struct nnp_trainlog_rec *r,
			const double *dice);
/* Keep the first n records (no-op when the log holds fewer). */
void nnp_trainlog_truncate(struct nnp_trainlog *log, size_t n);
/* The nclasses Dice values of record i (i < n). */
const double *nnp_trainlog_dice(const struct nnp_trainlog *log, size_t i);

/* numpy's nanmean: the mean of the non-NaN values, NaN when there are none. */
double nnp_trainlog_nanmean(const double *v, size_t n);
/* Set r->mean_fg_dice = nanmean(dice) and r->ema_fg_dice as nnU-Net's logger
 * does: the mean itself at the first epoch (r->epoch == 0 or no record of
 * epoch r->epoch - 1), else 0.9 * ema[r->epoch - 1] + 0.1 * mean.  NaN
 * propagates as in nnU-Net (a NaN mean makes this and every later EMA NaN). */
void nnp_trainlog_fill_dice(const struct nnp_trainlog *log, struct nnp_trainlog_rec *r,
			    const double *dice);

/* ---- checkpoint form: a flat array of doubles ----
 * [MAGIC, VERSION, K, n, then n rows of (epoch, train_loss, val_loss,
 *  mean_fg_dice, ema_fg_dice, lr, epoch_time_s, timestamp, dice_1..dice_K)].
 * Bit-exact: from_flat(to_flat(log)) has the same records (names are not
 * stored; the trainer passes them again, from dataset.json). */
#define NNP_TRAINLOG_FLAT_MAGIC 1852731468.0   /* "nnpL" as a big-endian int */
#define NNP_TRAINLOG_FLAT_VERSION 1.0
#define NNP_TRAINLOG_FLAT_HEAD 4
#define NNP_TRAINLOG_FLAT_FIXED 8              /* doubles per row before the Dice */

size_t nnp_trainlog_flat_count(const struct nnp_trainlog *log);
/* out holds nnp_trainlog_flat_count(log) doubles. */
void nnp_trainlog_to_flat(const struct nnp_trainlog *log, double *out);
/* A new log (log is overwritten: pass a zeroed or released struct) from count
 * doubles; names as for nnp_trainlog_init (NULL or K names).  NNP_EDATA for a
 * wrong magic/version, sizes that disagree with count, or epochs out of order. */
int nnp_trainlog_from_flat(struct nnp_trainlog *log, const double *v, size_t count,
			   const char *const *names);

/* ---- training_log.tsv ----
 * Header: epoch train_loss val_loss dice_<name or 1..K>... mean_fg_dice
 * ema_fg_dice lr epoch_time_s timestamp (tab-separated); one line per epoch,
 * numbers "%.9g" (timestamp "%.6f"), NaN "nan", infinities "inf"/"-inf". */

/* The whole file in a malloc'ed NUL-terminated buffer (*len without the NUL). */
int nnp_trainlog_format_tsv(const struct nnp_trainlog *log, char **out, size_t *len);
/* Write path atomically (whole file to a temp name, then rename): a reader or
 * a kill -9 never sees a torn file.  force: replace an existing file (the
 * trainer rewrites its log every epoch with force = 1). */
int nnp_trainlog_write_tsv(const struct nnp_trainlog *log, const char *path, int force);
/* A new log (log is overwritten) from path ("-" = standard input).  Errors
 * name the file and the line: NNP_EDATA for a missing or malformed header,
 * a row with the wrong number of fields, a field that is not a number,
 * epochs that are not 0, 1, 2, ... in order, or a file that cannot be
 * opened; NNP_EIO for a read error. */
int nnp_trainlog_read_tsv(struct nnp_trainlog *log, const char *path);

/* ---- progress.png ----
 * NNP_TRAINLOG_PNG_W x NNP_TRAINLOG_PNG_H RGB, three panels of
 * NNP_TRAINLOG_PANEL_H rows stacked: (0) train loss and val loss on the left
 * axis, pseudo Dice (dotted) and its EMA on the right axis; (1) epoch time;
 * (2) learning rate.  In every panel the plot area is the columns
 * [PLOT_LEFT, PLOT_RIGHT) and the rows [PLOT_TOP, PLOT_BOTTOM) below the
 * panel's first row; epoch e is drawn at column
 *   PLOT_LEFT + round((e - xlo) / (xhi - xlo) * (PLOT_RIGHT - PLOT_LEFT - 1))
 * with xlo = -pad, xhi = n - 1 + pad, pad = max(0.5, 0.02 * (n - 1)), and a
 * value v on an axis [lo, hi] at row
 *   PLOT_BOTTOM - 1 - round((v - lo) / (hi - lo) * (PLOT_BOTTOM - 1 - PLOT_TOP))
 * (round = half away from zero); a line's pixel (x, y) is the 2x2 block
 * from (x, y) to (x + 1, y + 1), an isolated point the 8x8 block from
 * (x - 4, y - 4).  An axis spans the finite values of its series with 5 %
 * margins; a constant series gets +-10 % of its value (+-1 around 0), no
 * finite value [0, 1]; the epoch-time axis is [0, 1.05 max] when no time
 * is negative (as nnU-Net's ylim).  Non-finite values and values beyond
 * +-1e300 leave gaps. */
#define NNP_TRAINLOG_PNG_W 1200
#define NNP_TRAINLOG_PNG_H 1800
#define NNP_TRAINLOG_PANEL_H 600
#define NNP_TRAINLOG_PLOT_LEFT 150
#define NNP_TRAINLOG_PLOT_RIGHT 1050
#define NNP_TRAINLOG_PLOT_TOP 96
#define NNP_TRAINLOG_PLOT_BOTTOM 520
/* Colours (0xRRGGBB). */
#define NNP_TRAINLOG_BG 0xFFFFFFu
#define NNP_TRAINLOG_C_TRAIN 0x1F4FE0u      /* train loss; also time and lr */
#define NNP_TRAINLOG_C_VAL 0xE0201Au        /* val loss */
#define NNP_TRAINLOG_C_DICE 0x40B040u       /* pseudo Dice, dotted */
#define NNP_TRAINLOG_C_EMA 0x006000u        /* pseudo Dice EMA */

/* Render into rgb (NNP_TRAINLOG_PNG_W * NNP_TRAINLOG_PNG_H * 3 bytes). */
void nnp_trainlog_render(const struct nnp_trainlog *log, unsigned char *rgb);
/* The PNG file's bytes (malloc'ed, *len bytes). */
int nnp_trainlog_png_encode(const struct nnp_trainlog *log, unsigned char **png, size_t *len);
/* Write path atomically; force: replace an existing file. */
int nnp_trainlog_write_png(const struct nnp_trainlog *log, const char *path, int force);

#endif
