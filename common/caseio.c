/* caseio.c — image + label/mask pairing with one header of look-ahead. */
#include <stdlib.h>
#include <unistd.h>
#include <string.h>
#include "caseio.h"
#include "err.h"

struct nnp_case_reader {
	struct nnp_reader *r;
	struct nnp_frame ahead;  /* a header read but not yet consumed */
	int have_ahead, done, orphans;
};

void nnp_case_reader_allow_orphans(struct nnp_case_reader *cr, int allow)
{
	cr->orphans = allow;
}

struct nnp_case_reader *nnp_case_reader_new(struct nnp_reader *r)
{
	struct nnp_case_reader *cr = calloc(1, sizeof *cr);
	if (!cr) {
		nnp_err(NNP_ENOMEM, "out of memory");
		return NULL;
	}
	cr->r = r;
	nnp_frame_init(&cr->ahead);
	return cr;
}

void nnp_case_reader_free(struct nnp_case_reader *cr)
{
	if (!cr)
		return;
	nnp_frame_release(&cr->ahead);
	free(cr);
}

int nnp_role_is_seg(const char *role)
{
	return !strcmp(role, "label") || !strcmp(role, "mask");
}

static int same_case(const struct nnp_frame *a, const struct nnp_frame *b)
{
	return (!a->case_id && !b->case_id) || (a->case_id && b->case_id && !strcmp(a->case_id, b->case_id));
}

/* Next header: the look-ahead one, else from the stream (1, 0 at end). */
static int next_header(struct nnp_case_reader *cr, struct nnp_frame *f)
{
	if (cr->have_ahead) {
		*f = cr->ahead;
		nnp_frame_init(&cr->ahead);
		cr->have_ahead = 0;
		return 1;
	}
	if (cr->done)
		return 0;
	int rc = nnp_reader_next(cr->r, f);
	if (rc == 0)
		cr->done = 1;
	return rc;
}

/* Move header f into v and read its payload. */
static int load(struct nnp_case_reader *cr, struct nnp_frame *f, struct nnp_vol *v)
{
	int rc;
	nnp_vol_init(v);
	v->f = *f;
	nnp_frame_init(f);
	if ((rc = nnp_reader_payload(cr->r, v)))
		nnp_vol_release(v);
	return rc;
}

int nnp_case_next(struct nnp_case_reader *cr, struct nnp_vol *img, struct nnp_vol *seg, int *has_seg)
{
	struct nnp_frame f, g;
	int rc;
	*has_seg = 0;
	nnp_vol_init(img);
	nnp_vol_init(seg);
	if ((rc = next_header(cr, &f)) <= 0)
		return rc;
	if (nnp_role_is_seg(f.role) && cr->orphans)
		return (rc = load(cr, &f, img)) ? rc : NNP_ITEM_OTHER;
	if (nnp_role_is_seg(f.role)) {
		rc = nnp_err(NNP_EDATA, "'%s': %s frame of case '%s' does not follow its image frame",
			     nnp_reader_name(cr->r), f.role, f.case_id ? f.case_id : "");
		nnp_frame_release(&f);
		return rc;
	}
	if ((rc = load(cr, &f, img)))
		return rc;
	if (strcmp(img->f.role, "image"))
		return NNP_ITEM_OTHER;
	rc = next_header(cr, &g);
	if (rc < 0)
		goto fail;
	if (rc == 1 && nnp_role_is_seg(g.role) && same_case(&img->f, &g)) {
		if ((rc = load(cr, &g, seg)))
			goto fail;
		*has_seg = 1;
	} else if (rc == 1) {
		cr->ahead = g;
		cr->have_ahead = 1;
	}
	return NNP_ITEM_CASE;
fail:
	nnp_vol_release(img);
	return rc;
}

int nnp_case_io_open(struct nnp_case_io *io, const char *in, int allow_orphans)
{
	memset(io, 0, sizeof *io);
	if (!(io->r = nnp_reader_open(in)))
		return NNP_EDATA;
	if (!(io->cr = nnp_case_reader_new(io->r)) || !(io->w = nnp_writer_fd(STDOUT_FILENO, "<stdout>"))) {
		nnp_case_io_close(io);
		return NNP_ENOMEM;
	}
	nnp_case_reader_allow_orphans(io->cr, allow_orphans);
	return NNP_OK;
}

void nnp_case_io_close(struct nnp_case_io *io)
{
	nnp_case_reader_free(io->cr);
	nnp_reader_free(io->r);
	nnp_writer_free(io->w);
	memset(io, 0, sizeof *io);
}
