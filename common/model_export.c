/* model_export.c — nnpipe models -> nnU-Net results folders (see model_export.h). */
#include "model_export.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <nettle/sha2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomic.h"
#include "err.h"
#include "json.h"
#include "model.h"
#include "pth.h"
#include "pth_write.h"

/* ------------------------------------------------------------------ */
/* The module tree of dynamic_network_architectures' UNets              */

struct mnode;

struct mparam {
	const char *name;
	int ndim;
	int64_t shape[5];
	long storage;          /* -1 until the state_dict walk first meets it */
};

struct mchild {
	char name[16];
	struct mnode *m;
};

struct mnode {
	int version;
	int np;
	struct mparam p[2];
	int nc, cc;
	struct mchild *c;
};

struct tree {
	struct mnode **v;
	size_t n, cap;
	int err;
};

static const int ONES[3] = { 1, 1, 1 };

static struct mnode *node(struct tree *t, int version)
{
	struct mnode *m;
	if (t->err)
		return NULL;
	if (t->n == t->cap) {
		size_t nc = t->cap ? 2 * t->cap : 256;
		struct mnode **nv = realloc(t->v, nc * sizeof *nv);
		if (!nv) {
			t->err = NNP_ENOMEM;
			return NULL;
		}
		t->v = nv;
		t->cap = nc;
	}
	if (!(m = calloc(1, sizeof *m))) {
		t->err = NNP_ENOMEM;
		return NULL;
	}
	m->version = version;
	t->v[t->n++] = m;
	return m;
}

static struct mnode *leaf(struct tree *t)
{
	return node(t, 1);
}

/* Register m as parent's child called name (PyTorch's add_module order). */
static void child(struct tree *t, struct mnode *parent, const char *name, struct mnode *m)
{
	if (t->err || !parent || !m)
		return;
	if (parent->nc == parent->cc) {
		int nc = parent->cc ? 2 * parent->cc : 4;
		struct mchild *ncs = realloc(parent->c, (size_t)nc * sizeof *ncs);
		if (!ncs) {
			t->err = NNP_ENOMEM;
			return;
		}
		parent->c = ncs;
		parent->cc = nc;
	}
	snprintf(parent->c[parent->nc].name, sizeof parent->c[parent->nc].name, "%s", name);
	parent->c[parent->nc++].m = m;
}

static void childi(struct tree *t, struct mnode *parent, int i, struct mnode *m)
{
	char name[16];
	snprintf(name, sizeof name, "%d", i);
	child(t, parent, name, m);
}

static void param(struct mnode *m, const char *name, int ndim, const int64_t *shape)
{
	struct mparam *p = &m->p[m->np++];
	p->name = name;
	p->ndim = ndim;
	memcpy(p->shape, shape, (size_t)ndim * sizeof *shape);
	p->storage = -1;
}

static struct mnode *conv(struct tree *t, int cout, int cin, int nd, const int *k, int bias)
{
	struct mnode *m = leaf(t);
	int64_t sh[5] = { cout, cin, 1, 1, 1 }, b[1] = { cout };
	if (!m)
		return NULL;
	for (int d = 0; d < nd; d++)
		sh[2 + d] = k[d];
	param(m, "weight", 2 + nd, sh);
	if (bias)
		param(m, "bias", 1, b);
	return m;
}

static struct mnode *tconv(struct tree *t, int cin, int cout, int nd, const int *st, int bias)
{
	struct mnode *m = conv(t, cin, cout, nd, st, 0);  /* weight (C_in, C_out, *stride) */
	int64_t b[1] = { cout };
	if (m && bias)
		param(m, "bias", 1, b);
	return m;
}

static struct mnode *norm(struct tree *t, int c, int affine)
{
	struct mnode *m = node(t, 2);   /* _NormBase._version */
	int64_t sh[1] = { c };
	if (m && affine) {
		param(m, "weight", 1, sh);
		param(m, "bias", 1, sh);
	}
	return m;
}

/* ConvDropoutNormReLU: conv, norm, nonlin, all_modules = Sequential(conv, norm, nonlin). */
static struct mnode *cdnr(struct tree *t, const struct nnp_net_arch *a, int cin, int cout, const int *k, int bias,
			  int nonlin)
{
	struct mnode *m = leaf(t), *cv = conv(t, cout, cin, a->ndim, k, bias), *nm = norm(t, cout, a->norm_affine);
	struct mnode *nl = nonlin ? leaf(t) : NULL, *all = leaf(t);
	child(t, m, "conv", cv);
	child(t, m, "norm", nm);
	if (nonlin)
		child(t, m, "nonlin", nl);
	child(t, m, "all_modules", all);
	child(t, all, "0", cv);
	child(t, all, "1", nm);
	if (nonlin)
		child(t, all, "2", nl);
	return t->err ? NULL : m;
}

/* StackedConvBlocks: convs = Sequential(n ConvDropoutNormReLU). */
static struct mnode *stacked(struct tree *t, const struct nnp_net_arch *a, int n, int cin, int cout, const int *k)
{
	struct mnode *m = leaf(t), *convs = leaf(t);
	child(t, m, "convs", convs);
	for (int i = 0; i < n; i++)
		childi(t, convs, i, cdnr(t, a, i ? cout : cin, cout, k, a->conv_bias, 1));
	return t->err ? NULL : m;
}

static struct mnode *plain_encoder(struct tree *t, const struct nnp_net_arch *a)
{
	struct mnode *enc = leaf(t), *stages = leaf(t);
	int cin = a->in_channels;
	child(t, enc, "stages", stages);
	for (int s = 0; s < a->n_stages; s++) {
		struct mnode *st = leaf(t);
		childi(t, stages, s, st);
		child(t, st, "0", stacked(t, a, a->n_conv[s], cin, a->features[s], a->kernel[s]));
		cin = a->features[s];
	}
	return t->err ? NULL : enc;
}

static int strided(const int *st)
{
	return st[0] != 1 || st[1] != 1 || st[2] != 1;
}

/* BasicBlockD: conv1, conv2 (no nonlin), nonlin2, skip (Identity, or
 * Sequential(AvgPool if strided, 1x1 ConvDropoutNormReLU without bias and
 * nonlin if the channels change)). */
static struct mnode *basic_block(struct tree *t, const struct nnp_net_arch *a, int s, int b, int cin)
{
	int cout = a->features[s], st = b == 0 && strided(a->stride[s]), idx = 0;
	struct mnode *m = leaf(t), *skip = leaf(t);
	child(t, m, "conv1", cdnr(t, a, cin, cout, a->kernel[s], a->conv_bias, 1));
	child(t, m, "conv2", cdnr(t, a, cout, cout, a->kernel[s], a->conv_bias, 0));
	child(t, m, "nonlin2", leaf(t));
	if (st)
		childi(t, skip, idx++, leaf(t));
	if (cin != cout)
		childi(t, skip, idx, cdnr(t, a, cin, cout, ONES, 0, 0));
	child(t, m, "skip", skip);
	return t->err ? NULL : m;
}

static struct mnode *resenc_encoder(struct tree *t, const struct nnp_net_arch *a)
{
	struct mnode *enc = leaf(t), *stages;
	int cin = a->features[0];
	child(t, enc, "stem", stacked(t, a, 1, a->in_channels, a->features[0], a->kernel[0]));
	stages = leaf(t);
	child(t, enc, "stages", stages);
	for (int s = 0; s < a->n_stages; s++) {
		struct mnode *srb = leaf(t), *blocks = leaf(t);
		childi(t, stages, s, srb);
		child(t, srb, "blocks", blocks);
		for (int b = 0; b < a->n_conv[s]; b++) {
			childi(t, blocks, b, basic_block(t, a, s, b, cin));
			cin = a->features[s];
		}
	}
	return t->err ? NULL : enc;
}

/* UNetDecoder: encoder (the same module), stages, transpconvs, seg_layers
 * (all S-1 heads are always built). */
static struct mnode *decoder(struct tree *t, const struct nnp_net_arch *a, struct mnode *enc)
{
	struct mnode *dec = leaf(t), *stages = leaf(t), *tr = leaf(t), *seg = leaf(t);
	const int *F = a->features;
	child(t, dec, "encoder", enc);
	child(t, dec, "stages", stages);
	child(t, dec, "transpconvs", tr);
	child(t, dec, "seg_layers", seg);
	for (int j = 0; j < a->n_stages - 1; j++) {
		int s = a->n_stages - 2 - j;
		childi(t, stages, j, stacked(t, a, a->n_conv_dec[j], 2 * F[s], F[s], a->kernel[s]));
		childi(t, tr, j, tconv(t, F[s + 1], F[s], a->ndim, a->stride[s + 1], a->conv_bias));
		childi(t, seg, j, conv(t, a->num_classes, F[s], a->ndim, ONES, 1));
	}
	return t->err ? NULL : dec;
}

static void tree_free(struct tree *t)
{
	for (size_t i = 0; i < t->n; i++) {
		free(t->v[i]->c);
		free(t->v[i]);
	}
	free(t->v);
}

/* ---- the state_dict walk (nn.Module.state_dict: module, own params, children) ---- */

struct lb {
	struct nnp_sd_layout *l;
	size_t ce, cm, cs;
	char path[NNP_SD_NAME];
};

static int lb_grow(void **v, size_t *cap, size_t need, size_t esz)
{
	void *nv;
	size_t nc = *cap ? 2 * *cap : 128;
	if (need <= *cap)
		return NNP_OK;
	while (nc < need)
		nc *= 2;
	if (!(nv = realloc(*v, nc * esz)))
		return nnp_err(NNP_ENOMEM, "state_dict layout: out of memory");
	*v = nv;
	*cap = nc;
	return NNP_OK;
}

static int add_entry(struct lb *b, struct mparam *p, size_t len)
{
	struct nnp_sd_layout *l = b->l;
	struct nnp_sd_entry *e;
	int rc;
	if ((rc = lb_grow((void **)&l->e, &b->ce, l->n + 1, sizeof *l->e)))
		return rc;
	e = &l->e[l->n];
	if (snprintf(e->name, sizeof e->name, "%s%s%s", b->path, len ? "." : "", p->name) >= (int)sizeof e->name)
		return nnp_err(NNP_EDATA, "state_dict layout: name too long at '%s'", b->path);
	if (p->storage < 0) {
		if ((rc = lb_grow((void **)&l->canon, &b->cs, l->nstorages + 1, sizeof *l->canon)))
			return rc;
		p->storage = (long)l->nstorages;
		l->canon[l->nstorages++] = l->n;
	}
	e->storage = (size_t)p->storage;
	e->ndim = p->ndim;
	memcpy(e->shape, p->shape, sizeof e->shape);
	l->n++;
	return NNP_OK;
}

static int walk(struct lb *b, struct mnode *m, size_t len)
{
	struct nnp_sd_layout *l = b->l;
	int rc;
	if ((rc = lb_grow((void **)&l->mod, &b->cm, l->nmodules + 1, sizeof *l->mod)))
		return rc;
	snprintf(l->mod[l->nmodules].path, sizeof l->mod[l->nmodules].path, "%s", b->path);
	l->mod[l->nmodules++].version = m->version;
	for (int i = 0; i < m->np; i++)
		if ((rc = add_entry(b, &m->p[i], len)))
			return rc;
	for (int i = 0; i < m->nc; i++) {
		int k = snprintf(b->path + len, sizeof b->path - len, "%s%s", len ? "." : "", m->c[i].name);
		if (k < 0 || (size_t)k >= sizeof b->path - len)
			return nnp_err(NNP_EDATA, "state_dict layout: module path too long at '%s'", b->path);
		rc = walk(b, m->c[i].m, len + (size_t)k);
		b->path[len] = '\0';
		if (rc)
			return rc;
	}
	return NNP_OK;
}

int nnp_sd_layout_build(const struct nnp_net_arch *a, struct nnp_sd_layout *out)
{
	struct tree t = { 0 };
	struct mnode *root, *enc;
	struct lb b = { .l = out };
	int rc;

	memset(out, 0, sizeof *out);
	root = leaf(&t);
	enc = a->cls == NNP_NET_RESENC ? resenc_encoder(&t, a) : plain_encoder(&t, a);
	child(&t, root, "encoder", enc);
	child(&t, root, "decoder", decoder(&t, a, enc));
	if (t.err) {
		tree_free(&t);
		return nnp_err(NNP_ENOMEM, "state_dict layout: out of memory");
	}
	rc = walk(&b, root, 0);
	tree_free(&t);
	if (rc)
		nnp_sd_layout_release(out);
	return rc;
}

void nnp_sd_layout_release(struct nnp_sd_layout *l)
{
	free(l->e);
	free(l->canon);
	free(l->mod);
	memset(l, 0, sizeof *l);
}

/* ------------------------------------------------------------------ */
/* Parameter sources: a model file's fold payload or a checkpoint       */

#define NNPM_HEADER_MAX ((size_t)64 << 20)

struct src {
	const char *path;                /* for messages */
	struct nnp_pth *pth;             /* results folder */
	const unsigned char *map;        /* model file, mapped */
	size_t maplen;
	json_t *hdr;
	const json_t *tensors;           /* the fold's table (in hdr) */
	const unsigned char *data;       /* the fold's payload */
	uint64_t nbytes;
	long long epoch;                 /* current_epoch to write */
};

static void src_close(struct src *s)
{
	nnp_pth_free(s->pth);
	if (s->map)
		munmap((void *)s->map, s->maplen);
	json_decref(s->hdr);
	memset(s, 0, sizeof *s);
}

static int map_ro(const char *path, const unsigned char **base, size_t *len)
{
	struct stat st;
	void *p;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return nnp_err(NNP_EDATA, "model file '%s': cannot open: %s", path, strerror(errno));
	if (fstat(fd, &st) || st.st_size < 1) {
		close(fd);
		return nnp_err(NNP_EDATA, "model file '%s': empty or unreadable", path);
	}
	p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
	close(fd);
	if (p == MAP_FAILED)
		return nnp_err(NNP_EIO, "model file '%s': cannot map it: %s", path, strerror(errno));
	*base = p;
	*len = (size_t)st.st_size;
	return NNP_OK;
}

static int payload_sha_ok(const unsigned char *d, uint64_t n, const char *want)
{
	struct sha256_ctx c;
	uint8_t dig[SHA256_DIGEST_SIZE];
	char hex[2 * SHA256_DIGEST_SIZE + 1];
	sha256_init(&c);
	sha256_update(&c, (size_t)n, d);
	sha256_digest(&c, sizeof dig, dig);
	for (size_t i = 0; i < sizeof dig; i++)
		snprintf(hex + 2 * i, 3, "%02x", dig[i]);
	return want && !strcmp(want, hex);
}

/* The payload of fold `fold` in a model file: after the msgpack preamble,
 * one bin32 (0xc6, big-endian length) per fold in the header's order. */
static int src_open_file(struct src *s, const char *path, const char *fold)
{
	msgpack_unpacked u;
	size_t pos = 0, i;
	const json_t *fj;
	int rc, ok;

	if ((rc = nnp_model_file_header(path, &s->hdr)) || (rc = map_ro(path, &s->map, &s->maplen)))
		return rc;
	s->epoch = json_is_integer(json_object_get(s->hdr, "current_epoch"))
		   ? json_integer_value(json_object_get(s->hdr, "current_epoch")) : 1000;
	msgpack_unpacked_init(&u);
	ok = msgpack_unpack_next(&u, (const char *)s->map, s->maplen < NNPM_HEADER_MAX ? s->maplen : NNPM_HEADER_MAX,
				 &pos) == MSGPACK_UNPACK_SUCCESS;
	msgpack_unpacked_destroy(&u);
	if (!ok)
		return nnp_err(NNP_EDATA, "model file '%s': cannot read its header", path);
	json_array_foreach(json_object_get(s->hdr, "folds"), i, fj) {
		const unsigned char *b = s->map + pos;
		uint64_t nb;
		if (pos + 5 > s->maplen || b[0] != 0xc6)
			return nnp_err(NNP_EDATA, "model file '%s': payload missing at byte %zu", path, pos);
		nb = (uint64_t)b[1] << 24 | (uint64_t)b[2] << 16 | (uint64_t)b[3] << 8 | b[4];
		if (nb != (uint64_t)json_integer_value(json_object_get(fj, "nbytes")) || nb > s->maplen - pos - 5)
			return nnp_err(NNP_EDATA, "model file '%s': payload truncated or of the wrong size", path);
		if (!strcmp(json_string_value(json_object_get(fj, "fold")) ?: "", fold)) {
			s->tensors = json_object_get(fj, "tensors");
			s->data = b + 5;
			s->nbytes = nb;
			if (!payload_sha_ok(s->data, nb, json_string_value(json_object_get(fj, "sha256"))))
				return nnp_err(NNP_EDATA, "model file '%s': fold '%s': sha256 mismatch (corrupt file)",
					       path, fold);
			return NNP_OK;
		}
		pos += 5 + nb;
	}
	return nnp_err(NNP_EDATA, "model file '%s': no fold '%s'", path, fold);
}

static int src_open_folder(struct src *s, const char *dir, const char *fold)
{
	char path[4096];
	const json_t *ep;
	int rc;
	if (snprintf(path, sizeof path, "%s/fold_%s/checkpoint_final.pth", dir, fold) >= (int)sizeof path)
		return nnp_err(NNP_EUSAGE, "model folder '%s': path too long", dir);
	if ((rc = nnp_pth_load(path, &s->pth)))
		return rc;
	ep = json_object_get(s->pth->meta, "current_epoch");
	s->epoch = json_is_integer(ep) ? json_integer_value(ep) : 1000;
	return NNP_OK;
}

static const json_t *table_find(const json_t *tensors, const char *name)
{
	size_t i;
	const json_t *t;
	json_array_foreach(tensors, i, t)
		if (!strcmp(json_string_value(json_object_get(t, "name")) ?: "", name))
			return t;
	return NULL;
}

static const void *file_get(const struct src *s, const struct nnp_sd_entry *e, int64_t numel, int *rc)
{
	const json_t *t = table_find(s->tensors, e->name), *sh;
	json_int_t off;
	*rc = NNP_OK;
	if (!t)
		return NULL;
	sh = json_object_get(t, "shape");
	off = json_integer_value(json_object_get(t, "offset"));
	if ((int)json_array_size(sh) != e->ndim)
		goto bad;
	for (int d = 0; d < e->ndim; d++)
		if (json_integer_value(json_array_get(sh, (size_t)d)) != e->shape[d])
			goto bad;
	if (off < 0 || (uint64_t)off > s->nbytes || (uint64_t)numel * 4 > s->nbytes - (uint64_t)off)
		goto bad;
	return s->data + off;
bad:
	*rc = nnp_err(NNP_EDATA, "model file '%s': tensor '%s' has the wrong shape or lies outside its payload",
		      s->path, e->name);
	return NULL;
}

static const void *pth_get(const struct src *s, const struct nnp_sd_entry *e, int *rc)
{
	char alt[NNP_SD_NAME + 8];
	struct nnp_param_src ps = nnp_model_pth_params(s->pth);
	const void *d;
	*rc = NNP_OK;
	snprintf(alt, sizeof alt, "module.%s", e->name);
	if (!nnp_pth_find(s->pth, e->name) && !nnp_pth_find(s->pth, alt))
		return NULL;
	if (!(d = ps.get(ps.ctx, e->name, e->ndim, e->shape)))
		*rc = NNP_EDATA;
	return d;
}

/* The float32 bytes of a storage's canonical tensor; NULL with *rc = 0 when
 * the source does not have it. */
static const void *src_get(const struct src *s, const struct nnp_sd_entry *e, int64_t numel, int *rc)
{
	return s->pth ? pth_get(s, e, rc) : file_get(s, e, numel, rc);
}

/* ------------------------------------------------------------------ */
/* The checkpoint dict (nnUNetTrainer.save_checkpoint)                  */

struct ckmeta {
	const json_t *plans, *dataset;
	const char *config, *trainer, *fold;
	long long epoch;
	int nmirror;              /* -1: None */
	const int *mirror;
};

static void pkl_network_weights(struct nnp_pkl *p, const struct nnp_sd_layout *l)
{
	char key[32];
	nnp_pkl_odict(p, l->n, 1);
	for (size_t i = 0; i < l->n; i++) {
		snprintf(key, sizeof key, "%zu", l->e[i].storage);
		nnp_pkl_str(p, l->e[i].name);
		nnp_pkl_tensor_f32(p, key, "cpu", l->e[i].ndim, l->e[i].shape);
	}
	nnp_pkl_dict(p, 1);              /* the BUILD state: {'_metadata': OrderedDict} */
	nnp_pkl_str(p, "_metadata");
	nnp_pkl_odict(p, l->nmodules, 0);
	for (size_t i = 0; i < l->nmodules; i++) {
		nnp_pkl_str(p, l->mod[i].path);
		nnp_pkl_dict(p, 1);
		nnp_pkl_str(p, "version");
		nnp_pkl_int(p, l->mod[i].version);
		nnp_pkl_end(p);
	}
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	nnp_pkl_end(p);
}

/* torch.optim.SGD(params, 0.01, momentum=0.99, nesterov=True,
 * weight_decay=3e-5).state_dict() before the first step. */
static void pkl_optimizer(struct nnp_pkl *p, size_t nparams)
{
	nnp_pkl_dict(p, 2);
	nnp_pkl_str(p, "state");
	nnp_pkl_dict(p, 0);
	nnp_pkl_end(p);
	nnp_pkl_str(p, "param_groups");
	nnp_pkl_list(p, 1);
	nnp_pkl_dict(p, 10);
	nnp_pkl_str(p, "lr");
	nnp_pkl_float(p, 0.01);
	nnp_pkl_str(p, "momentum");
	nnp_pkl_float(p, 0.99);
	nnp_pkl_str(p, "dampening");
	nnp_pkl_int(p, 0);
	nnp_pkl_str(p, "weight_decay");
	nnp_pkl_float(p, 3e-05);
	nnp_pkl_str(p, "nesterov");
	nnp_pkl_bool(p, 1);
	nnp_pkl_str(p, "maximize");
	nnp_pkl_bool(p, 0);
	nnp_pkl_str(p, "foreach");
	nnp_pkl_none(p);
	nnp_pkl_str(p, "differentiable");
	nnp_pkl_bool(p, 0);
	nnp_pkl_str(p, "initial_lr");
	nnp_pkl_float(p, 0.01);
	nnp_pkl_str(p, "params");
	nnp_pkl_list(p, nparams);
	for (size_t i = 0; i < nparams; i++)
		nnp_pkl_int(p, (long long)i);
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	nnp_pkl_end(p);
	nnp_pkl_end(p);
}

/* nnUNetLogger.get_checkpoint() of a logger that logged nothing. */
static void pkl_logging(struct nnp_pkl *p)
{
	static const char *const keys[] = { "mean_fg_dice", "ema_fg_dice", "dice_per_class_or_region",
					    "train_losses", "val_losses", "lrs", "epoch_start_timestamps",
					    "epoch_end_timestamps" };
	nnp_pkl_dict(p, sizeof keys / sizeof *keys);
	for (size_t i = 0; i < sizeof keys / sizeof *keys; i++) {
		nnp_pkl_str(p, keys[i]);
		nnp_pkl_list(p, 0);
		nnp_pkl_end(p);
	}
	nnp_pkl_end(p);
}

static void pkl_init_args(struct nnp_pkl *p, const struct ckmeta *m)
{
	nnp_pkl_dict(p, 5);
	nnp_pkl_str(p, "plans");
	nnp_pkl_json(p, m->plans);
	nnp_pkl_str(p, "configuration");
	nnp_pkl_str(p, m->config);
	nnp_pkl_str(p, "fold");
	if (*m->fold && strspn(m->fold, "0123456789") == strlen(m->fold) && strlen(m->fold) < 10)
		nnp_pkl_int(p, atoll(m->fold));
	else
		nnp_pkl_str(p, m->fold);
	nnp_pkl_str(p, "dataset_json");
	nnp_pkl_json(p, m->dataset);
	nnp_pkl_str(p, "device");
	nnp_pkl_torch_device(p, "cpu");
	nnp_pkl_end(p);
}

static void pkl_checkpoint(struct nnp_pkl *p, const struct nnp_sd_layout *l, const struct ckmeta *m)
{
	nnp_pkl_dict(p, 9);
	nnp_pkl_str(p, "network_weights");
	pkl_network_weights(p, l);
	nnp_pkl_str(p, "optimizer_state");
	pkl_optimizer(p, l->nstorages);
	nnp_pkl_str(p, "grad_scaler_state");
	nnp_pkl_none(p);
	nnp_pkl_str(p, "logging");
	pkl_logging(p);
	nnp_pkl_str(p, "_best_ema");
	nnp_pkl_none(p);
	nnp_pkl_str(p, "current_epoch");
	nnp_pkl_int(p, m->epoch);
	nnp_pkl_str(p, "init_args");
	pkl_init_args(p, m);
	nnp_pkl_str(p, "trainer_name");
	nnp_pkl_str(p, m->trainer);
	nnp_pkl_str(p, "inference_allowed_mirroring_axes");
	if (m->nmirror < 0) {
		nnp_pkl_none(p);
	} else {
		nnp_pkl_tuple(p, (size_t)m->nmirror);
		for (int i = 0; i < m->nmirror; i++)
			nnp_pkl_int(p, m->mirror[i]);
		nnp_pkl_end(p);
	}
	nnp_pkl_end(p);
}

/* ------------------------------------------------------------------ */
/* One fold's checkpoint file                                           */

static int cmp_key(const void *a, const void *b)
{
	char x[32], y[32];
	snprintf(x, sizeof x, "%zu", *(const size_t *)a);
	snprintf(y, sizeof y, "%zu", *(const size_t *)b);
	return strcmp(x, y);
}

static int64_t numel_of(const struct nnp_sd_entry *e)
{
	int64_t n = 1;
	for (int d = 0; d < e->ndim; d++)
		n *= e->shape[d];
	return n;
}

/* The storages' data in storage order; missing ones (deep-supervision heads
 * only) point to *zeros. */
static int gather(const struct src *s, const struct nnp_sd_layout *l, const void **data, void **zeros, int *nzero)
{
	int64_t maxn = 0;
	int rc, nz = 0;
	for (size_t k = 0; k < l->nstorages; k++) {
		const struct nnp_sd_entry *e = &l->e[l->canon[k]];
		if ((data[k] = src_get(s, e, numel_of(e), &rc)))
			continue;
		if (rc)
			return rc;
		if (strncmp(e->name, "decoder.seg_layers.", 19))
			return nnp_err(NNP_EDATA, "model '%s': tensor '%s' is missing", s->path, e->name);
		nz++;
		if (numel_of(e) > maxn)
			maxn = numel_of(e);
	}
	if (nz && !(*zeros = calloc((size_t)maxn, sizeof(float))))
		return nnp_err(NNP_ENOMEM, "model export: out of memory");
	for (size_t k = 0; k < l->nstorages; k++)
		if (!data[k])
			data[k] = *zeros;
	*nzero += nz;
	return NNP_OK;
}

static int write_members(struct nnp_pthw *w, const struct nnp_sd_layout *l, const void *const *data,
			 const unsigned char *pkl, size_t pkl_len)
{
	size_t *order = malloc((l->nstorages + 1) * sizeof *order);
	uint16_t one = 1;
	char name[48];
	int rc;
	if (!order)
		return nnp_err(NNP_ENOMEM, "model export: out of memory");
	for (size_t k = 0; k < l->nstorages; k++)
		order[k] = k;
	qsort(order, l->nstorages, sizeof *order, cmp_key);   /* torch writes sorted(keys) */
	rc = nnp_pthw_add(w, "data.pkl", pkl, pkl_len);
	if (!rc)
		rc = *(const unsigned char *)&one ? nnp_pthw_add(w, "byteorder", "little", 6)
						  : nnp_pthw_add(w, "byteorder", "big", 3);
	for (size_t i = 0; !rc && i < l->nstorages; i++) {
		const struct nnp_sd_entry *e = &l->e[l->canon[order[i]]];
		snprintf(name, sizeof name, "data/%zu", order[i]);
		rc = nnp_pthw_add(w, name, data[order[i]], (size_t)numel_of(e) * sizeof(float));
	}
	if (!rc)
		rc = nnp_pthw_add(w, "version", "3\n", 2);
	if (!rc)
		rc = nnp_pthw_finish(w);
	free(order);
	return rc;
}

static int write_checkpoint(const char *path, int force, const struct src *s, const struct nnp_sd_layout *l,
			    const struct ckmeta *m, int *nzero, struct nnp_pthw **out)
{
	const void **data = calloc(l->nstorages + 1, sizeof *data);
	void *zeros = NULL;
	struct nnp_pkl *p = NULL;
	struct nnp_pthw *w = NULL;
	const unsigned char *pkl;
	size_t len;
	int rc;

	*out = NULL;
	if (!data)
		return nnp_err(NNP_ENOMEM, "model export: out of memory");
	if (!(rc = gather(s, l, data, &zeros, nzero)) && !(rc = nnp_pkl_new(0, &p))) {
		pkl_checkpoint(p, l, m);
		if ((rc = nnp_pkl_finish(p, &pkl, &len)))
			nnp_err_ctx(rc, "checkpoint '%s'", path);
		else if (!(rc = nnp_pthw_open(path, force, &w)) && (rc = write_members(w, l, data, pkl, len)))
			nnp_pthw_abort(w);
		else
			*out = w;
	}
	nnp_pkl_free(p);
	free(zeros);
	free(data);
	return rc;
}

/* ------------------------------------------------------------------ */
/* The export                                                           */

#define MAX_OUT (NNP_MODEL_MAX_FOLDS + 2)

struct exp {
	const char *model, *out;
	const struct nnp_model_export_opts *o;
	struct nnp_model_export_report *rep;
	int is_file;
	char *folds[NNP_MODEL_MAX_FOLDS];
	int nfolds;
	struct nnp_pthw *ck[NNP_MODEL_MAX_FOLDS];
	int nck;
	struct nnp_atomic js[2];
	int njs;
	char *made[NNP_MODEL_MAX_FOLDS + 1];   /* folders this call created */
	int nmade;
	json_t *plans, *dataset;
	char *config, *trainer;
	int nmirror, mirror[3];
	struct nnp_sd_layout l;
};

static int valid_fold(const char *s)
{
	return !strcmp(s, "all") || (*s && strlen(s) < 10 && strspn(s, "0123456789") == strlen(s));
}

static int add_fold(struct exp *x, const char *name)
{
	if (!valid_fold(name))
		return nnp_err(NNP_EUSAGE, "fold '%s': want a number or 'all'", name);
	for (int i = 0; i < x->nfolds; i++)
		if (!strcmp(x->folds[i], name))
			return NNP_OK;
	if (x->nfolds == NNP_MODEL_MAX_FOLDS)
		return nnp_err(NNP_EUSAGE, "more than %d folds", NNP_MODEL_MAX_FOLDS);
	if (!(x->folds[x->nfolds] = strdup(name)))
		return nnp_err(NNP_ENOMEM, "model export: out of memory");
	x->nfolds++;
	return NNP_OK;
}

static int cmp_fold(const void *a, const void *b)
{
	const char *x = *(char *const *)a, *y = *(char *const *)b;
	int xa = !strcmp(x, "all"), ya = !strcmp(y, "all");
	if (xa || ya)
		return xa - ya;
	return strlen(x) != strlen(y) ? (strlen(x) < strlen(y) ? -1 : 1) : strcmp(x, y);
}

/* Every fold_F/checkpoint_final.pth of a results folder, numerically. */
static int folder_folds(struct exp *x)
{
	DIR *d = opendir(x->model);
	struct dirent *e;
	int rc = NNP_OK;
	char path[4096];
	if (!d)
		return nnp_err(NNP_EDATA, "model folder '%s': cannot open: %s", x->model, strerror(errno));
	while (!rc && (e = readdir(d))) {
		if (strncmp(e->d_name, "fold_", 5) || !valid_fold(e->d_name + 5))
			continue;
		snprintf(path, sizeof path, "%s/%s/checkpoint_final.pth", x->model, e->d_name);
		if (nnp_is_file(path))
			rc = add_fold(x, e->d_name + 5);
	}
	closedir(d);
	qsort(x->folds, (size_t)x->nfolds, sizeof *x->folds, cmp_fold);
	if (!rc && !x->nfolds)
		rc = nnp_err(NNP_EDATA, "model folder '%s': no fold_*/checkpoint_final.pth", x->model);
	return rc;
}

static int file_folds(struct exp *x)
{
	json_t *h;
	const json_t *f;
	size_t i;
	int rc = nnp_model_file_header(x->model, &h);
	if (rc)
		return rc;
	json_array_foreach(json_object_get(h, "folds"), i, f)
		if ((rc = add_fold(x, json_string_value(f ? json_object_get(f, "fold") : NULL) ?: "?")))
			break;
	json_decref(h);
	if (!rc && !x->nfolds)
		rc = nnp_err(NNP_EDATA, "model file '%s': no folds", x->model);
	return rc;
}

static int list_folds(struct exp *x)
{
	if (x->o->folds) {
		for (int i = 0; i < x->o->nfolds; i++) {
			int rc = add_fold(x, x->o->folds[i]);
			if (rc)
				return rc;
		}
		return NNP_OK;
	}
	return x->is_file ? file_folds(x) : folder_folds(x);
}

static int out_path(const struct exp *x, const char *fold, const char *name, char *buf, size_t n)
{
	int k = fold ? snprintf(buf, n, "%s/fold_%s/%s", x->out, fold, name) : snprintf(buf, n, "%s/%s", x->out, name);
	if (k < 0 || (size_t)k >= n)
		return nnp_err(NNP_EUSAGE, "output path too long under '%s'", x->out);
	return NNP_OK;
}

/* Refuse existing checkpoints before anything is written. */
static int check_checkpoints(const struct exp *x)
{
	char path[4096];
	int rc;
	for (int i = 0; i < x->nfolds && !x->o->force; i++) {
		if ((rc = out_path(x, x->folds[i], "checkpoint_final.pth", path, sizeof path)))
			return rc;
		if (access(path, F_OK) == 0)
			return nnp_err(NNP_EUSAGE, "'%s' exists (use --force to overwrite)", path);
	}
	return NNP_OK;
}

static int make_dir(struct exp *x, const char *dir)
{
	int rc;
	if (nnp_is_dir(dir))
		return NNP_OK;
	if ((rc = nnp_mkdirs(dir)))
		return rc;
	if (!(x->made[x->nmade] = strdup(dir)))
		return nnp_err(NNP_ENOMEM, "model export: out of memory");
	x->nmade++;
	return NNP_OK;
}

/* plans.json / dataset.json: kept when equal, refused when different
 * (unless force), else staged as a temporary. */
static int stage_json(struct exp *x, const char *name, const json_t *j)
{
	char path[4096], *txt = NULL;
	json_t *old = NULL;
	int rc;
	if ((rc = out_path(x, NULL, name, path, sizeof path)))
		return rc;
	if (access(path, F_OK) == 0) {
		int same = nnp_json_load(path, &old) == NNP_OK && json_equal(old, (json_t *)j);
		json_decref(old);
		nnp_err_clear();
		if (same) {
			x->rep->kept_json++;
			return NNP_OK;
		}
		if (!x->o->force)
			return nnp_err(NNP_EUSAGE, "'%s' exists and differs from the model's (use --force to overwrite)",
				       path);
	}
	if ((rc = nnp_json_dumps(j, 4, 0, &txt)))
		return rc;
	if (!(rc = nnp_atomic_open(&x->js[x->njs], path, 1))) {
		if ((rc = nnp_write_all(x->js[x->njs].fd, txt, strlen(txt), path)))
			nnp_atomic_abort(&x->js[x->njs]);
		else
			x->njs++;
	}
	free(txt);
	return rc;
}

/* From the first fold's model: what every checkpoint and the folder share. */
static int take_meta(struct exp *x, const struct nnp_model *m)
{
	int rc;
	x->plans = json_incref(m->plans);
	x->dataset = json_incref(m->dataset);
	if (!(x->config = strdup(m->config)) || !(x->trainer = strdup(m->trainer)))
		return nnp_err(NNP_ENOMEM, "model export: out of memory");
	x->nmirror = m->n_mirror_axes;
	memcpy(x->mirror, m->mirror_axes, sizeof x->mirror);
	if ((rc = nnp_sd_layout_build(&m->arch, &x->l)) || (rc = make_dir(x, x->out)) ||
	    (rc = stage_json(x, "plans.json", x->plans)) || (rc = stage_json(x, "dataset.json", x->dataset)))
		return rc;
	return NNP_OK;
}

static int export_fold(struct exp *x, int k)
{
	const char *fold = x->folds[k];
	const char *const one[1] = { fold };
	struct nnp_model_opts mo = { one, 1, NULL, NULL, { -1, NNP_PREC_FP32 } };
	struct nnp_model *m = NULL;
	struct src s = { .path = x->model };
	char dir[4096], path[4096];
	int rc;

	if ((rc = nnp_model_open(x->model, &mo, &m)))
		return rc;
	if (k == 0)
		rc = take_meta(x, m);
	else if (strcmp(m->config, x->config))
		rc = nnp_err(NNP_EDATA, "model '%s': fold %s is configuration '%s', fold %s '%s'", x->model, fold,
			     m->config, x->folds[0], x->config);
	nnp_model_free(m);
	if (!rc)
		rc = x->is_file ? src_open_file(&s, x->model, fold) : src_open_folder(&s, x->model, fold);
	if (!rc && !(rc = out_path(x, fold, "checkpoint_final.pth", path, sizeof path))) {
		struct ckmeta cm = { x->plans, x->dataset, x->config, x->trainer, fold, s.epoch, x->nmirror, x->mirror };
		snprintf(dir, sizeof dir, "%s/fold_%s", x->out, fold);
		if (!(rc = make_dir(x, dir)) &&
		    !(rc = write_checkpoint(path, x->o->force, &s, &x->l, &cm, &x->rep->zero_heads, &x->ck[x->nck])))
			x->nck++;
	}
	src_close(&s);
	return rc;
}

static int commit_all(struct exp *x)
{
	int rc = NNP_OK, r;
	for (int i = 0; i < x->nck; i++) {
		r = nnp_pthw_commit(x->ck[i]);
		x->ck[i] = NULL;
		if (!rc)
			rc = r;
	}
	x->rep->nfolds = x->nck;
	x->nck = 0;
	for (int i = 0; i < x->njs; i++) {
		r = nnp_atomic_commit(&x->js[i]);
		if (!rc)
			rc = r;
	}
	x->njs = 0;
	return rc;
}

static void exp_release(struct exp *x, int failed)
{
	for (int i = 0; i < x->nck; i++)
		nnp_pthw_abort(x->ck[i]);
	for (int i = 0; i < x->njs; i++)
		nnp_atomic_abort(&x->js[i]);
	for (int i = x->nmade - 1; i >= 0; i--) {
		if (failed)
			rmdir(x->made[i]);  /* only empty folders go */
		free(x->made[i]);
	}
	for (int i = 0; i < x->nfolds; i++)
		free(x->folds[i]);
	json_decref(x->plans);
	json_decref(x->dataset);
	free(x->config);
	free(x->trainer);
	nnp_sd_layout_release(&x->l);
}

int nnp_model_export(const char *model, const char *outdir, const struct nnp_model_export_opts *o,
		     struct nnp_model_export_report *rep)
{
	struct exp x;
	int rc;

	memset(&x, 0, sizeof x);
	memset(rep, 0, sizeof *rep);
	x.model = model;
	x.out = outdir;
	x.o = o;
	x.rep = rep;
	if (!nnp_is_file(model) && !nnp_is_dir(model))
		return nnp_err(NNP_EDATA, "model '%s': no such file or folder", model);
	x.is_file = nnp_is_file(model);
	if (x.is_file && !nnp_model_is_file(model))
		return nnp_err(NNP_EDATA, "model file '%s': not an nnpipe model file (.nnpm)", model);
	rc = list_folds(&x);
	if (!rc)
		rc = check_checkpoints(&x);
	for (int k = 0; !rc && k < x.nfolds; k++)
		rc = export_fold(&x, k);
	if (!rc)
		rc = commit_all(&x);
	exp_release(&x, rc != NNP_OK);
	return rc;
}
