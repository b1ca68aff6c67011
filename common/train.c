/* train.c — nnU-Net's training loop (train.h). */
#include "train.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "atomic.h"
#include "caseio.h"
#include "dataset.h"
#include "err.h"
#include "frame.h"
#include "json.h"
#include "loss.h"
#include "model.h"
#include "net.h"
#include "optim.h"
#include "plans.h"
#include "prog.h"
#include "pyjson.h"
#include "trainlog.h"
#include "split.h"
#include "trainnet.h"

#define CMD_MAX 16384

struct stream {
	FILE *pipe;                 /* spawned pipeline, or NULL */
	struct nnp_reader *r;
	struct nnp_case_reader *cr;
	char what[64];
};

struct trainer {
	const struct nnp_train_cfg *c;
	json_t *plans, *dataset;
	const json_t *cfg;          /* plans["configurations"][config] after inherits_from */
	struct nnp_net_arch arch;
	struct nnp_net_graph g;
	struct nnp_tnet *net;
	int ndim;                   /* network spatial axes */
	int64_t patch[3];           /* final patch (2D: {1, p0, p1}) */
	int64_t sp[3];              /* network input spatial (ndim entries) */
	int64_t vox;                /* voxels of one patch */
	int B, C, K, regions, batch_dice;
	int ignore_label;           /* -1: none */
	char mask_channels[256];
	struct nnp_regions reg;     /* regions datasets */
	int *reg_len;
	int16_t *reg_labels;
	int nh;
	double dsw[NNP_NET_MAX_STAGES];
	double scales[NNP_NET_MAX_STAGES][3];
	int64_t hshape[NNP_NET_MAX_STAGES][5];
	size_t hn[NNP_NET_MAX_STAGES];
	float *img, *out[NNP_NET_MAX_STAGES], *grad[NNP_NET_MAX_STAGES];
	int16_t *seg, *segds[NNP_NET_MAX_STAGES];
	uint8_t *regt;              /* region targets of one head (regions datasets) */
	struct nnp_param *params;
	struct nnp_sgd sgd;
	struct nnp_trainlog log;
	int nfg;                    /* foreground classes (labels) or regions: the pseudo-Dice entries */
	char **class_names;         /* nfg names from dataset.json */
	double *dice_buf;
	int epoch;                  /* the next epoch to run */
	int iter0;                  /* iterations of that epoch already done (a stop mid-epoch) */
	double loss_sum0;           /* and the sum of their losses */
	double best_ema;            /* NaN: none yet */
	double ema;
	struct stream train_in;     /* the plumbing form's single stream */
};

void nnp_train_cfg_default(struct nnp_train_cfg *c)
{
	memset(c, 0, sizeof *c);
	c->plans_name = "nnUNetPlans";
	c->trainer = "nnUNetTrainer";
	c->fold = "0";
	c->epochs = 1000;
	c->iters = 250;
	c->val_iters = 50;
	c->save_every = 1;
	c->seed = 12345;
	c->final_val = 1;
	c->initial_lr = 1e-2;
	c->device = -1;
}

/* ---- setup ---- */

static int load_jsons(struct trainer *t)
{
	const struct nnp_train_cfg *c = t->c;
	char path[4096];
	int rc;
	snprintf(path, sizeof path, "%s/%s.json", c->pre_dir, c->plans_name);
	if ((rc = nnp_json_load(path, &t->plans)))
		return rc;
	snprintf(path, sizeof path, "%s/dataset.json", c->pre_dir);
	return nnp_json_load(path, &t->dataset);
}

static int config_ints(const json_t *a, int64_t *out, int max, const char *what)
{
	size_t i;
	const json_t *v;
	if (!json_is_array(a) || (int)json_array_size(a) > max || json_array_size(a) < 1)
		return nnp_err(NNP_EDATA, "plans: configuration '%s' lacks a valid %s", what, what);
	json_array_foreach(a, i, v) out[i] = json_integer_value(v);
	return (int)json_array_size(a);
}

static int setup_config(struct trainer *t)
{
	const json_t *v;
	json_t *chans = json_object_get(t->dataset, "channel_names");
	int64_t p[3];
	int n, rc;

	if ((rc = nnp_plans_config_get(t->plans, t->c->config, "patch_size", &v)))
		return rc;
	if ((n = config_ints(v, p, 3, "patch_size")) < 0)
		return n;
	t->ndim = n;
	t->patch[0] = 1;
	for (int d = 0; d < n; d++) {
		t->sp[d] = p[d];
		t->patch[3 - n + d] = p[d];
	}
	t->vox = 1;
	for (int d = 0; d < n; d++)
		t->vox *= t->sp[d];
	if (!nnp_plans_config_get(t->plans, t->c->config, "batch_size", &v))
		t->B = (int)json_integer_value(v);
	if (t->c->batch_size > 0)
		t->B = t->c->batch_size;
	if (t->B < 1)
		return nnp_err(NNP_EDATA, "plans: configuration '%s' has no batch_size", t->c->config);
	t->batch_dice = !nnp_plans_config_get(t->plans, t->c->config, "batch_dice", &v) && json_is_true(v);
	t->C = json_is_object(chans) ? (int)json_object_size(chans) : 0;
	if (t->C < 1)
		return nnp_err(NNP_EDATA, "dataset.json: no channel_names");
	if ((rc = nnp_model_num_heads(t->dataset, &t->K, &t->regions)))
		return rc;
	v = json_object_get(json_object_get(t->dataset, "labels"), "ignore");
	t->ignore_label = json_is_integer(v) ? (int)json_integer_value(v) : -1;
	t->mask_channels[0] = '\0';
	if (!nnp_plans_config_get(t->plans, t->c->config, "use_mask_for_norm", &v) && json_is_array(v)) {
		size_t i;
		const json_t *e;
		json_array_foreach(v, i, e) if (json_is_true(e)) {
			size_t l = strlen(t->mask_channels);
			snprintf(t->mask_channels + l, sizeof t->mask_channels - l, "%s%zu", l ? "," : "", i);
		}
	}
	if ((rc = nnp_plans_config_get(t->plans, t->c->config, "architecture", &v)) ||
	    (rc = nnp_net_arch_parse(v, t->C, t->K, &t->arch)))
		return rc;
	t->arch.deep_supervision = 1;
	if ((rc = nnp_net_check_shape(&t->arch, t->sp)))
		return rc;
	return nnp_net_graph_build(&t->arch, &t->g);
}

/* The largest batch size whose estimate fits in limit bytes (0 if none). */
static int fitting_batch(const struct trainer *t, uint64_t limit)
{
	int b = t->B;
	while (b > 0 && nnp_tnet_mem_estimate(&t->g, b, t->sp) > limit)
		b--;
	return b;
}

static int check_memory(const struct trainer *t)
{
	uint64_t need = nnp_tnet_mem_estimate(&t->g, t->B, t->sp) +
			(uint64_t)t->B * (uint64_t)t->vox * ((uint64_t)t->C * 4 + 2 + (uint64_t)t->K * 8);
	uint64_t have = nnp_phys_mem() / 10 * 9;
	int fit;
	if (!have || need <= have)
		return NNP_OK;
	fit = fitting_batch(t, have);
	if (fit > 0)
		return nnp_err(NNP_ENOMEM, "training needs about %.1f GiB for batch size %d, %.1f GiB available: "
			       "--batch-size %d fits", need / 1073741824.0, t->B, have / 1073741824.0, fit);
	return nnp_err(NNP_ENOMEM, "training needs about %.1f GiB even for batch size 1 (%.1f GiB available): "
		       "plan a smaller patch (nnp plan --gpu-memory-target)", need / 1073741824.0,
		       have / 1073741824.0);
}

static int setup_buffers(struct trainer *t)
{
	int64_t strides[NNP_NET_MAX_STAGES * 3];
	double sc[NNP_NET_MAX_STAGES * 3];
	int rc, ns;
	t->nh = nnp_tnet_nheads(t->net);
	for (int s = 0; s < t->arch.n_stages; s++)
		for (int d = 0; d < t->ndim; d++)
			strides[s * t->ndim + d] = t->arch.stride[s][d];
	if ((ns = nnp_ds_scales(strides, t->arch.n_stages, t->ndim, sc)) < 0)
		return ns;
	if (ns != t->nh)
		return nnp_err(NNP_EINTERNAL, "training: %d deep-supervision scales for %d heads", ns, t->nh);
	for (int h = 0; h < t->nh; h++)
		for (int d = 0; d < t->ndim; d++)
			t->scales[h][d] = sc[h * t->ndim + d];
	if (t->nh == 1)
		t->dsw[0] = 1;
	else if ((rc = nnp_ds_weights(t->nh, t->dsw)))
		return rc;
	t->img = malloc((size_t)(t->B * t->C * t->vox) * sizeof(float));
	t->seg = malloc((size_t)(t->B * t->vox) * sizeof(int16_t));
	if (t->regions)
		t->regt = malloc((size_t)(t->B * (t->K + 1) * t->vox));
	if (!t->img || !t->seg || (t->regions && !t->regt))
		return nnp_err(NNP_ENOMEM, "training: out of memory");
	return NNP_OK;
}

/* Head buffers after the first forward (shapes known). */
static int head_buffers(struct trainer *t)
{
	if (t->out[0])
		return NNP_OK;
	for (int h = 0; h < t->nh; h++) {
		int nd = nnp_tnet_head_shape(t->net, h, t->hshape[h]);
		size_t vox = 1;
		if (nd < 0)
			return nd;
		for (int d = 2; d < nd; d++)
			vox *= (size_t)t->hshape[h][d];
		t->hn[h] = (size_t)t->B * (size_t)t->K * vox;
		t->out[h] = malloc(t->hn[h] * sizeof(float));
		t->grad[h] = malloc(t->hn[h] * sizeof(float));
		t->segds[h] = malloc((size_t)t->B * vox * sizeof(int16_t));
		if (!t->out[h] || !t->grad[h] || !t->segds[h])
			return nnp_err(NNP_ENOMEM, "training: out of memory");
	}
	return NNP_OK;
}

/* ---- sample streams ---- */

/* 'text' with ' quoted for sh. */
static int shq(char *buf, size_t n, const char *s)
{
	return nnp_shell_quote(buf, n, s, 0);
}

static uint64_t epoch_seed(uint64_t seed, int epoch, int val)
{
	uint64_t x = seed * 0x9E3779B97F4A7C15ull + (uint64_t)epoch * 2 + (uint64_t)val;
	x ^= x >> 31;
	x *= 0xBF58476D1CE4E5B9ull;
	x ^= x >> 29;
	return x & 0xffffffffu;
}

static int stream_cmd(const struct trainer *t, int val, int epoch, int iters, char *cmd, size_t n)
{
	const struct nnp_train_cfg *c = t->c;
	char bin[4200], pre[4200], mask[300] = "", jobs[32] = "";
	uint64_t s = epoch_seed(c->seed, epoch, val);
	int rc;
	if ((rc = shq(bin, sizeof bin, c->bin_dir)) || (rc = shq(pre, sizeof pre, c->pre_dir)))
		return rc;
	if (t->mask_channels[0])
		snprintf(mask, sizeof mask, " --mask-channels %s", t->mask_channels);
	if (c->aug_threads > 0)
		snprintf(jobs, sizeof jobs, " -j %d", c->aug_threads);
	if (snprintf(cmd, n,
		     "%s/nnp-sample -q --preprocessed %s -p %s -c %s --fold %s --split %s "
		     "--seed %llu -n %d -b %d | %s/nnp-augment -q --seed %llu%s%s%s",
		     bin, pre, c->plans_name, c->config, c->fold, val ? "val" : "train", (unsigned long long)s, iters,
		     t->B, bin, (unsigned long long)s, val ? " --none" : "", mask, jobs) >= (int)n)
		return nnp_err(NNP_EUSAGE, "command line too long");
	return NNP_OK;
}

static void stream_close(struct stream *s)
{
	nnp_case_reader_free(s->cr);
	nnp_reader_free(s->r);
	if (s->pipe)
		pclose(s->pipe);
	memset(s, 0, sizeof *s);
}

static int stream_spawn(const struct trainer *t, int val, int epoch, int iters, struct stream *s)
{
	char cmd[CMD_MAX];
	int rc;
	memset(s, 0, sizeof *s);
	snprintf(s->what, sizeof s->what, "%s samples of epoch %d", val ? "validation" : "training", epoch);
	if ((rc = stream_cmd(t, val, epoch, iters, cmd, sizeof cmd)))
		return rc;
	nnp_debug("%s: %s", s->what, cmd);
	fflush(NULL);
	if (!(s->pipe = popen(cmd, "r")))
		return nnp_err(NNP_EIO, "cannot start the sample stream: %s", strerror(errno));
	if (!(s->r = nnp_reader_fd(fileno(s->pipe), s->what)) || !(s->cr = nnp_case_reader_new(s->r))) {
		stream_close(s);
		return NNP_ENOMEM;
	}
	return NNP_OK;
}

static int stream_open_path(const char *path, struct stream *s)
{
	memset(s, 0, sizeof *s);
	snprintf(s->what, sizeof s->what, "%s", strcmp(path, "-") ? path : "<stdin>");
	if (!(s->r = nnp_reader_open(path)) || !(s->cr = nnp_case_reader_new(s->r))) {
		stream_close(s);
		return NNP_EDATA;
	}
	return NNP_OK;
}

/* A spawned stream's exit status after it was read to its end. */
static int stream_finish(struct stream *s)
{
	int st = 0;
	nnp_case_reader_free(s->cr);
	nnp_reader_free(s->r);
	s->cr = NULL;
	s->r = NULL;
	if (s->pipe) {
		st = pclose(s->pipe);
		s->pipe = NULL;
		if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st))
			return nnp_err(NNP_EDATA, "%s: nnp sample | nnp augment failed (status %d; see its "
				       "message above)", s->what, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	}
	return NNP_OK;
}

static int check_sample(const struct trainer *t, const struct stream *s, const struct nnp_vol *img,
			const struct nnp_vol *seg)
{
	const char *cs = img->f.case_id ? img->f.case_id : "?";
	if (img->f.dtype != NNP_F32 || seg->f.dtype != NNP_I16)
		return nnp_err(NNP_EDATA, "%s: case '%s': want float32 images and int16 labels (nnp augment output)",
			       s->what, cs);
	if (img->f.shape[0] != t->C || seg->f.shape[0] != 1)
		return nnp_err(NNP_EDATA, "%s: case '%s': %lld image channels (want %d)", s->what, cs,
			       (long long)img->f.shape[0], t->C);
	for (int d = 0; d < 3; d++)
		if (img->f.shape[1 + d] != t->patch[d] || seg->f.shape[1 + d] != t->patch[d])
			return nnp_err(NNP_EDATA, "%s: case '%s': sample %lld x %lld x %lld, the patch is %lld x %lld x %lld",
				       s->what, cs, (long long)img->f.shape[1], (long long)img->f.shape[2],
				       (long long)img->f.shape[3], (long long)t->patch[0], (long long)t->patch[1],
				       (long long)t->patch[2]);
	return NNP_OK;
}

/* B samples into t->img / t->seg.  NNP_OK, or NNP_EDATA at a premature end. */
static int stream_batch(struct trainer *t, struct stream *s)
{
	for (int b = 0; b < t->B; b++) {
		struct nnp_vol img, seg;
		int has_seg, rc;
		nnp_vol_init(&img);
		nnp_vol_init(&seg);
		rc = nnp_case_next(s->cr, &img, &seg, &has_seg);
		if (rc == NNP_ITEM_END)
			rc = nnp_err(NNP_EDATA, "%s: the stream ended after %d samples of a batch", s->what, b);
		else if (rc >= 0 && (rc == NNP_ITEM_OTHER || !has_seg))
			rc = nnp_err(NNP_EDATA, "%s: an image without its label frame", s->what);
		else if (rc >= 0)
			rc = check_sample(t, s, &img, &seg);
		if (!rc) {
			memcpy(t->img + (size_t)b * (size_t)(t->C * t->vox), img.data, (size_t)(t->C * t->vox) * sizeof(float));
			memcpy(t->seg + (size_t)b * (size_t)t->vox, seg.data, (size_t)t->vox * sizeof(int16_t));
		}
		nnp_vol_release(&img);
		nnp_vol_release(&seg);
		if (rc < 0)
			return rc;
	}
	return NNP_OK;
}

/* ---- one step ---- */

static struct nnp_loss_shape head_shape(const struct trainer *t, int h)
{
	struct nnp_loss_shape ls = { t->B, t->K, t->ndim, { 1, 1, 1 } };
	for (int d = 0; d < t->ndim; d++)
		ls.n[d] = t->hshape[h][2 + d];
	return ls;
}

static struct nnp_loss_opts loss_opts(const struct trainer *t)
{
	struct nnp_loss_opts o = { t->batch_dice, t->ignore_label >= 0, t->ignore_label >= 0 ? t->ignore_label : 0 };
	return o;
}

/* The target of head h in t->segds[h] (and t->regt for regions). */
static int head_target(struct trainer *t, int h)
{
	struct nnp_loss_shape ls = head_shape(t, h);
	int64_t on[3];
	int rc = nnp_ds_downsample_seg(t->seg, t->B, t->ndim, t->sp, t->scales[h], t->segds[h], on);
	if (rc)
		return rc;
	for (int d = 0; d < t->ndim; d++)
		if (on[d] != ls.n[d])
			return nnp_err(NNP_EINTERNAL, "deep supervision: target %lld != output %lld on axis %d",
				       (long long)on[d], (long long)ls.n[d], d);
	if (t->regions)
		return nnp_regions_from_seg(t->segds[h], t->B, nnp_loss_nvox(&ls), &t->reg, t->ignore_label >= 0,
					    t->ignore_label, t->regt);
	return NNP_OK;
}

static int heads_loss(struct trainer *t, int want_grad, double *loss)
{
	struct nnp_loss_opts o = loss_opts(t);
	int rc;
	*loss = 0;
	for (int h = 0; h < t->nh; h++) {
		struct nnp_loss_shape ls = head_shape(t, h);
		struct nnp_loss_value v;
		float *g = want_grad ? t->grad[h] : NULL;
		if (t->dsw[h] == 0 && h > 0)
			continue;
		if ((rc = nnp_tnet_output(t->net, h, t->out[h])) || (rc = head_target(t, h)))
			return rc;
		if (t->dsw[h] == 0)
			continue;   /* head 0 with weight 0 cannot happen; targets kept for the pseudo Dice */
		rc = t->regions ? nnp_loss_dc_bce(&ls, t->out[h], t->regt, &o, t->dsw[h], g, &v) :
				  nnp_loss_dc_ce(&ls, t->out[h], t->segds[h], &o, t->dsw[h], g, &v);
		if (rc)
			return rc;
		*loss += t->dsw[h] * v.total;
	}
	return NNP_OK;
}

static int train_step(struct trainer *t, double lr, double *loss)
{
	const float *dout[NNP_NET_MAX_STAGES];
	int np = nnp_tnet_nparams(t->net), rc;
	double norm;
	if ((rc = nnp_tnet_forward(t->net, t->B, t->sp, t->img)) || (rc = head_buffers(t)) ||
	    (rc = heads_loss(t, 1, loss)))
		return rc;
	if (!isfinite(*loss))
		return nnp_err(NNP_EDATA, "training diverged: the loss is %g (learning rate %g)", *loss, lr);
	for (int h = 0; h < t->nh; h++)
		dout[h] = t->dsw[h] != 0 ? t->grad[h] : NULL;
	if ((rc = nnp_tnet_backward(t->net, dout)) ||
	    (rc = nnp_clip_grad_norm(t->params, np, NNP_CLIP_NORM, &norm)))
		return rc;
	return nnp_sgd_step(&t->sgd, t->params, np, lr);
}

static int val_step(struct trainer *t, double *loss, struct nnp_pdice *dc)
{
	struct nnp_loss_shape ls;
	struct nnp_loss_opts o = loss_opts(t);
	int rc;
	if ((rc = nnp_tnet_forward(t->net, t->B, t->sp, t->img)) || (rc = head_buffers(t)) ||
	    (rc = heads_loss(t, 0, loss)))
		return rc;
	ls = head_shape(t, 0);
	if (t->regions && (rc = head_target(t, 0)))
		return rc;
	return t->regions ? nnp_pdice_add_regions(dc, &ls, t->out[0], t->regt, &o) :
			    nnp_pdice_add_labels(dc, &ls, t->out[0], t->segds[0], &o);
}

/* The optimizer over the network's parameters (momentum buffers empty). */
static int sgd_setup(struct trainer *t)
{
	int np = nnp_tnet_nparams(t->net);
	if (!(t->params = calloc((size_t)np, sizeof *t->params)))
		return nnp_err(NNP_ENOMEM, "training: out of memory");
	for (int i = 0; i < np; i++) {
		struct nnp_tparam *p = nnp_tnet_param(t->net, i);
		t->params[i] = (struct nnp_param){ p->w, p->g, p->n };
	}
	return nnp_sgd_init(&t->sgd, t->params, np, NNP_SGD_MOMENTUM, NNP_SGD_WEIGHT_DECAY, 1);
}

/* ---- checkpoints ---- */

static json_t *mirror_axes_json(const struct trainer *t)
{
	json_t *a = json_array();
	for (int d = 0; d < t->ndim; d++)
		json_array_append_new(a, json_integer(d));
	return a;
}

static json_t *real_or_null(double v)
{
	return isfinite(v) ? json_real(v) : json_null();
}

static json_t *ckpt_header(const struct trainer *t, int finished)
{
	const struct nnp_train_cfg *c = t->c;
	json_t *h = json_pack("{s:s,s:s,s:O,s:O,s:o}", "configuration", c->config, "trainer", c->trainer, "plans",
			      t->plans, "dataset", t->dataset, "mirror_axes", mirror_axes_json(t));
	json_t *tr = json_pack("{s:i,s:i,s:i,s:i,s:i,s:s,s:I,s:o,s:o,s:b,s:f,s:I}", "epoch", t->epoch, "epochs",
			       c->epochs, "iters", c->iters, "val_iters", c->val_iters, "batch_size", t->B, "fold",
			       c->fold, "seed", (json_int_t)c->seed, "best_ema", real_or_null(t->best_ema), "ema",
			       real_or_null(t->ema), "finished", finished, "initial_lr", c->initial_lr, "sgd_steps",
			       (json_int_t)t->sgd.steps);
	json_object_set_new(tr, "iter", json_integer(t->iter0));
	json_object_set_new(tr, "loss_sum", json_real(t->loss_sum0));
	json_object_set_new(h, "training", tr);
	return h;
}

static int ckpt_path(const struct trainer *t, const char *name, char *out, size_t n)
{
	if (snprintf(out, n, "%s/%s.nnpm", t->c->out_dir, name) >= (int)n)
		return nnp_err(NNP_EUSAGE, "output folder name too long: '%s'", t->c->out_dir);
	return NNP_OK;
}

static int ckpt_write(struct trainer *t, const char *name, int finished)
{
	struct nnp_param_src src = nnp_tnet_param_src(t->net);
	struct nnp_model_blob ex[3];
	int64_t nmom = nnp_sgd_state_len(&t->sgd);
	size_t nlog = nnp_trainlog_flat_count(&t->log);
	float *mom = malloc((size_t)nmom * sizeof(float) + 1);
	uint8_t *has = malloc((size_t)t->sgd.np + 1);
	double *logv = malloc(nlog * sizeof(double) + 1);
	char path[4200];
	json_t *h = NULL;
	int rc;
	if (!mom || !has || !logv) {
		rc = nnp_err(NNP_ENOMEM, "checkpoint: out of memory");
		goto out;
	}
	if ((rc = ckpt_path(t, name, path, sizeof path)))
		goto out;
	nnp_sgd_export(&t->sgd, mom, has);
	nnp_trainlog_to_flat(&t->log, logv);
	ex[0] = (struct nnp_model_blob){ "momentum", mom, (uint64_t)nmom * sizeof(float) };
	ex[1] = (struct nnp_model_blob){ "momentum_present", has, (uint64_t)t->sgd.np };
	ex[2] = (struct nnp_model_blob){ "log", logv, (uint64_t)nlog * sizeof(double) };
	if (!(h = ckpt_header(t, finished)))
		rc = nnp_err(NNP_ENOMEM, "checkpoint: out of memory");
	else
		rc = nnp_model_write(path, h, &t->g, t->c->fold, &src, ex, 3, 1);
	if (!rc)
		nnp_debug("wrote %s (epoch %d)", path, t->epoch);
out:
	json_decref(h);
	free(mom);
	free(has);
	free(logv);
	return rc;
}

static const struct nnp_model_blob *find_blob(const struct nnp_model_blob *ex, int n, const char *name)
{
	for (int i = 0; i < n; i++)
		if (ex[i].name && !strcmp(ex[i].name, name))
			return &ex[i];
	return NULL;
}

static int restore_extra(struct trainer *t, const struct nnp_model_blob *extra, int nextra)
{
	const struct nnp_model_blob *mom = find_blob(extra, nextra, "momentum"),
				    *has = find_blob(extra, nextra, "momentum_present"),
				    *lg = find_blob(extra, nextra, "log");
	int rc;
	if (!mom || !has || !lg)
		return nnp_err(NNP_EDATA, "checkpoint: the optimizer state or the log is missing");
	if (has->nbytes != (uint64_t)t->sgd.np || mom->nbytes % sizeof(float))
		return nnp_err(NNP_EDATA, "checkpoint: optimizer state of the wrong size");
	if ((rc = nnp_sgd_import(&t->sgd, mom->data, has->data, (int64_t)(mom->nbytes / sizeof(float)))))
		return rc;
	nnp_trainlog_release(&t->log);
	return nnp_trainlog_from_flat(&t->log, lg->data, (size_t)(lg->nbytes / sizeof(double)),
				      (const char *const *)t->class_names);
}

static int ckpt_visit(void *ctx, const json_t *h, const struct nnp_param_src *params,
		      const struct nnp_model_blob *extra, int nextra)
{
	struct trainer *t = ctx;
	const json_t *tr = json_object_get(h, "training"), *v;
	int rc;
	if (!json_is_object(tr))
		return nnp_err(NNP_EDATA, "checkpoint: no training state (not written by nnp train)");
	if ((rc = nnp_tnet_create(&t->g, params, 0, &t->net)))
		return rc;
	t->epoch = (int)json_integer_value(json_object_get(tr, "epoch"));
	t->iter0 = (int)json_integer_value(json_object_get(tr, "iter"));
	t->loss_sum0 = json_number_value(json_object_get(tr, "loss_sum"));
	if (t->epoch < 0 || t->iter0 < 0 || t->iter0 > t->c->iters)
		return nnp_err(NNP_EDATA, "checkpoint: epoch %d, iteration %d: not a state this run can resume "
			       "(another --iters?)", t->epoch, t->iter0);
	v = json_object_get(tr, "best_ema");
	t->best_ema = json_is_number(v) ? json_number_value(v) : NAN;
	v = json_object_get(tr, "ema");
	t->ema = json_is_number(v) ? json_number_value(v) : NAN;
	if ((rc = sgd_setup(t)))
		return rc;
	t->sgd.steps = (int64_t)json_integer_value(json_object_get(tr, "sgd_steps"));
	return restore_extra(t, extra, nextra);
}

/* The checkpoint --continue resumes from (nnU-Net's order), or NULL. */
static const char *resume_name(const struct trainer *t, char *path, size_t n)
{
	static const char *const names[] = { "checkpoint_final", "checkpoint_latest", "checkpoint_best" };
	for (int i = 0; i < 3; i++)
		if (!ckpt_path(t, names[i], path, n) && nnp_is_file(path))
			return names[i];
	return NULL;
}

/* ---- the epoch ---- */

/* Skip the n batches of a resumed epoch that were trained before the stop. */
static int skip_batches(struct trainer *t, struct stream *s, int n)
{
	for (int i = 0; i < n; i++) {
		int rc = stream_batch(t, s);
		if (rc)
			return rc;
	}
	return NNP_OK;
}

static int train_iterations(struct trainer *t, double lr, double *mean_loss)
{
	const struct nnp_train_cfg *c = t->c;
	struct stream own, *s = &t->train_in;
	struct nnp_progress pr;
	double sum = t->loss_sum0;
	int rc = NNP_OK, it = t->iter0;
	if (it < c->iters && !c->train_stream) {
		if ((rc = stream_spawn(t, 0, t->epoch, c->iters, &own)))
			return rc;
		s = &own;
		rc = skip_batches(t, s, it);
	}
	nnp_progress_begin(&pr, "train", c->iters);
	nnp_progress_add(&pr, it);
	for (; it < c->iters && !rc; it++) {
		double l;
		if (c->stop && *c->stop)
			break;
		if (!(rc = stream_batch(t, s)) && !(rc = train_step(t, lr, &l)))
			sum += l;
		if (rc)
			break;
		nnp_progress_add(&pr, 1);
	}
	nnp_progress_end(&pr);
	if (s == &own) {
		if (!rc && it == c->iters)
			rc = stream_finish(&own);
		stream_close(&own);
	}
	t->iter0 = it;
	t->loss_sum0 = sum;
	if (c->stop && *c->stop)
		return NNP_TRAIN_STOPPED;   /* an interrupted stream is no error then */
	*mean_loss = sum / c->iters;
	return rc;
}

static int val_iterations(struct trainer *t, double *mean_loss, double *dice)
{
	const struct nnp_train_cfg *c = t->c;
	struct stream s;
	struct nnp_pdice dc;
	double sum = 0;
	int rc, it;
	*mean_loss = NAN;
	for (int k = 0; k < t->nfg; k++)
		dice[k] = NAN;
	if (c->val_iters <= 0)
		return NNP_OK;
	nnp_pdice_init(&dc);
	if ((rc = nnp_pdice_alloc(&dc, t->nfg)))
		return rc;
	if ((rc = stream_spawn(t, 1, t->epoch, c->val_iters, &s))) {
		nnp_pdice_release(&dc);
		return rc;
	}
	for (it = 0; it < c->val_iters && !rc; it++) {
		double l;
		if (c->stop && *c->stop)
			break;
		if (!(rc = stream_batch(t, &s)) && !(rc = val_step(t, &l, &dc)))
			sum += l;
	}
	if (!rc && it == c->val_iters)
		rc = stream_finish(&s);
	stream_close(&s);
	if (!rc) {
		*mean_loss = sum / (it > 0 ? it : 1);
		nnp_pdice_result(&dc, dice);
	}
	nnp_pdice_release(&dc);
	if (c->stop && *c->stop)
		return NNP_TRAIN_STOPPED;
	return rc;
}

static int log_epoch(struct trainer *t, const struct nnp_trainlog_rec *r, const double *dice)
{
	char tsv[4200], png[4200];
	int rc;
	snprintf(tsv, sizeof tsv, "%s/%s", t->c->out_dir, NNP_TRAINLOG_TSV);
	snprintf(png, sizeof png, "%s/%s", t->c->out_dir, NNP_TRAINLOG_PNG);
	if ((rc = nnp_trainlog_append(&t->log, r, dice)) || (rc = nnp_trainlog_write_tsv(&t->log, tsv, 1)) ||
	    (rc = nnp_trainlog_write_png(&t->log, png, 1)))
		return rc;
	return NNP_OK;
}

static void report_epoch(const struct trainer *t, const struct nnp_trainlog_rec *r, const double *d)
{
	char dice[512] = "";
	for (int k = 0; k < t->nfg && strlen(dice) + 16 < sizeof dice; k++)
		snprintf(dice + strlen(dice), sizeof dice - strlen(dice), "%s%.4f", k ? " " : "", d[k]);
	nnp_info("epoch %d/%d: train loss %.4f, val loss %.4f, pseudo dice [%s], ema %.4f, lr %.6f, %.1f s",
		 r->epoch, t->c->epochs, r->train_loss, r->val_loss, dice, r->ema_fg_dice, r->lr, r->epoch_time_s);
}

static int run_epoch(struct trainer *t)
{
	const struct nnp_train_cfg *c = t->c;
	struct nnp_trainlog_rec r;
	double *dice = t->dice_buf;
	double t0 = nnp_now();
	int rc;

	memset(&r, 0, sizeof r);
	r.epoch = t->epoch;
	r.timestamp = (double)time(NULL);
	r.lr = nnp_polylr(c->initial_lr, t->epoch, c->epochs, NNP_POLY_EXPONENT);
	if ((rc = train_iterations(t, r.lr, &r.train_loss)) || (rc = val_iterations(t, &r.val_loss, dice)))
		return rc;
	nnp_trainlog_fill_dice(&t->log, &r, dice);
	t->ema = r.ema_fg_dice;
	r.epoch_time_s = nnp_now() - t0;
	if ((rc = log_epoch(t, &r, dice)))
		return rc;
	report_epoch(t, &r, dice);
	t->epoch++;
	t->iter0 = 0;
	t->loss_sum0 = 0;
	if (isfinite(t->ema) && (isnan(t->best_ema) || t->ema > t->best_ema)) {
		t->best_ema = t->ema;
		nnp_info("new best EMA pseudo Dice %.4f", t->best_ema);
		if ((rc = ckpt_write(t, "checkpoint_best", 0)))
			return rc;
	}
	if (c->save_every > 0 && t->epoch % c->save_every == 0 && t->epoch < c->epochs)
		return ckpt_write(t, "checkpoint_latest", 0);
	return NNP_OK;
}

/* ---- final validation ---- */

static long fold_number(const char *fold)
{
	return strcmp(fold, "all") ? strtol(fold, NULL, 10) : -1;
}

static int data_folder(const struct trainer *t, char *out, size_t n)
{
	const json_t *di;
	if (!nnp_plans_config_get(t->plans, t->c->config, "data_identifier", &di) && json_is_string(di))
		snprintf(out, n, "%s", json_string_value(di));
	else
		snprintf(out, n, "%s_%s", t->c->plans_name, t->c->config);
	return NNP_OK;
}

/* sh script: every validation case through select | infer | export | write, then evaluate. */
static int validation_script(const struct trainer *t, char *const *ids, size_t n, const char *data, char **out)
{
	const struct nnp_train_cfg *c = t->c;
	const char *ending = json_string_value(json_object_get(t->dataset, "file_ending"));
	const char *e = ending ? ending : ".nii.gz";
	char bin[4200], pre[4200], dir[4200], q[4200], tp[4200], ts[4200];
	size_t cap = 8192 + n * 4 * 9000, len = 0;
	char *s = malloc(cap);
	int rc;
	if (!s)
		return nnp_err(NNP_ENOMEM, "out of memory");
	if ((rc = shq(bin, sizeof bin, c->bin_dir)) || (rc = shq(pre, sizeof pre, c->pre_dir)) ||
	    (rc = shq(dir, sizeof dir, c->out_dir))) {
		free(s);
		return rc;
	}
	len += (size_t)snprintf(s + len, cap - len, "set -e -o pipefail; mkdir -p %s/validation\n", dir);
	if (c->save_probabilities)
		len += (size_t)snprintf(s + len, cap - len,
					"T=%s/validation/.nnp-tmp; rm -rf \"$T\"; mkdir -p \"$T\"; trap 'rm -rf \"$T\"' EXIT\n",
					dir);
	for (size_t i = 0; i < n; i++) {
		char file[4200];
		snprintf(file, sizeof file, "%s/validation/%s%s", c->out_dir, ids[i], e);
		if ((rc = shq(q, sizeof q, file))) {
			free(s);
			return rc;
		}
		len += (size_t)snprintf(s + len, cap - len,
					"%s/nnp-select --role image %s/%s/%s.nnp | %s/nnp-infer -q -m %s/checkpoint_final.nnpm"
					" | %s/nnp-export -q -p %s/%s.json -c %s --dataset-json %s/dataset.json%s",
					bin, pre, data, ids[i], bin, dir, bin, pre, c->plans_name, c->config, pre,
					c->save_probabilities ? " --save-probabilities" : "");
		if (!c->save_probabilities) {
			len += (size_t)snprintf(s + len, cap - len, " | %s/nnp-write -q -f -o %s\n", bin, q);
			continue;
		}
		/* seg + probabilities into a private folder, then both renamed into place */
		snprintf(file, sizeof file, "%s/validation/.nnp-tmp/%s_probabilities%s", c->out_dir, ids[i], e);
		if ((rc = shq(tp, sizeof tp, file)))
			break;
		snprintf(file, sizeof file, "%s/validation/.nnp-tmp/%s_seg%s", c->out_dir, ids[i], e);
		if ((rc = shq(ts, sizeof ts, file)))
			break;
		len += (size_t)snprintf(s + len, cap - len,
					" | %s/nnp-write -q -f -o \"$T/\"\nmv -f %s %s/validation/ && mv -f %s %s\n",
					bin, tp, dir, ts, q);
	}
	if (rc) {
		free(s);
		return rc;
	}
	snprintf(s + len, cap - len,
		 "%s/nnp-evaluate -q -f --chill %s/validation %s/gt_segmentations --dataset-json %s/dataset.json "
		 "-o %s/validation/summary.json\n",
		 bin, dir, pre, pre, dir);
	*out = s;
	return NNP_OK;
}

static int report_validation(const struct trainer *t)
{
	char path[4200];
	json_t *sum;
	const json_t *fg;
	double d = NAN;
	int rc;
	snprintf(path, sizeof path, "%s/validation/summary.json", t->c->out_dir);
	if ((rc = nnp_pyjson_load(path, &sum)))
		return rc;
	fg = json_object_get(json_object_get(sum, "foreground_mean"), "Dice");
	nnp_pyjson_number(fg, &d);
	nnp_info("Mean Validation Dice: %.6f", d);
	json_decref(sum);
	return NNP_OK;
}

static int final_validation(struct trainer *t)
{
	char data[512], **ids = NULL, *script = NULL;
	size_t n = 0;
	int rc, st;
	pid_t pid;

	data_folder(t, data, sizeof data);
	if ((rc = nnp_fold_ids(t->c->pre_dir, data, fold_number(t->c->fold), 1, &ids, &n)))
		return rc;
	if (!n) {
		nnp_strv_free(ids, n);
		return nnp_err(NNP_EDATA, "fold %s has no validation cases", t->c->fold);
	}
	nnp_info("final validation: %zu cases", n);
	if ((rc = validation_script(t, ids, n, data, &script))) {
		nnp_strv_free(ids, n);
		return rc;
	}
	nnp_strv_free(ids, n);
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		execl("/bin/bash", "bash", "-c", script, (char *)NULL);
		_exit(127);
	}
	free(script);
	if (pid < 0)
		return nnp_err(NNP_EIO, "cannot start the validation: %s", strerror(errno));
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return nnp_err(NNP_EIO, "validation: %s", strerror(errno));
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		return nnp_err(NNP_EDATA, "final validation failed (status %d; see the message above)",
			       WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	return report_validation(t);
}

/* ---- classes ---- */

/* A label entry's values: an integer or a list of them (regions). */
static int label_values(const json_t *v, int16_t *out, int max)
{
	size_t i;
	const json_t *e;
	if (json_is_integer(v)) {
		out[0] = (int16_t)json_integer_value(v);
		return 1;
	}
	if (!json_is_array(v) || (int)json_array_size(v) > max || !json_array_size(v))
		return nnp_err(NNP_EDATA, "dataset.json: a label is neither an integer nor a list of integers");
	json_array_foreach(v, i, e) {
		if (!json_is_integer(e))
			return nnp_err(NNP_EDATA, "dataset.json: a region lists a non-integer label");
		out[i] = (int16_t)json_integer_value(e);
	}
	return (int)json_array_size(v);
}

/* Foreground classes (labels, in label order) or regions (dataset.json
 * order): names for the log, and the region table. */
static int setup_classes(struct trainer *t)
{
	const json_t *labels = json_object_get(t->dataset, "labels"), *v;
	const char *key;
	int16_t vals[256];
	int k = 0, nl = 0;

	t->nfg = t->regions ? t->K : t->K - 1;
	t->class_names = calloc((size_t)t->nfg + 1, sizeof *t->class_names);
	t->dice_buf = calloc((size_t)t->nfg + 1, sizeof *t->dice_buf);
	t->reg_len = calloc((size_t)t->nfg + 1, sizeof *t->reg_len);
	t->reg_labels = calloc((size_t)t->nfg * 256 + 1, sizeof *t->reg_labels);
	if (!t->class_names || !t->dice_buf || !t->reg_len || !t->reg_labels)
		return nnp_err(NNP_ENOMEM, "out of memory");
	json_object_foreach((json_t *)labels, key, v) {
		int n = label_values(v, vals, 256);
		if (n < 0)
			return n;
		if (!strcmp(key, "ignore") || (n == 1 && vals[0] == 0))
			continue;
		if (k == t->nfg)
			break;
		if (t->regions) {
			memcpy(t->reg_labels + nl, vals, (size_t)n * sizeof *vals);
			t->reg_len[k] = n;
			nl += n;
		}
		if (!(t->class_names[k++] = nnp_strdup(key)))
			return NNP_ENOMEM;
	}
	if (!t->regions) {
		/* label order is by value: dataset.json lists them so (nnU-Net sorts them) */
		for (; k < t->nfg; k++) {
			char name[32];
			snprintf(name, sizeof name, "%d", k + 1);
			if (!(t->class_names[k] = nnp_strdup(name)))
				return NNP_ENOMEM;
		}
	} else if (k != t->nfg) {
		return nnp_err(NNP_EDATA, "dataset.json: %d regions found, %d expected", k, t->nfg);
	}
	t->reg = (struct nnp_regions){ t->nfg, t->reg_len, t->reg_labels };
	return nnp_trainlog_init(&t->log, (size_t)t->nfg, (const char *const *)t->class_names);
}

/* ---- the run ---- */

static int copy_to_model_folder(const struct trainer *t)
{
	static const char *const names[] = { "dataset.json", "dataset_fingerprint.json" };
	char dir[4200], path[4300], *slash;
	int rc;
	snprintf(dir, sizeof dir, "%s", t->c->out_dir);
	if ((slash = strrchr(dir, '/')) && slash != dir)
		*slash = '\0';
	else
		snprintf(dir, sizeof dir, ".");
	snprintf(path, sizeof path, "%s/plans.json", dir);
	if ((rc = nnp_json_write_file(t->plans, path, 4, 0, 1)))
		return rc;
	for (int i = 0; i < 2; i++) {
		json_t *j;
		char src[4300];
		snprintf(src, sizeof src, "%s/%s", t->c->pre_dir, names[i]);
		if (!nnp_is_file(src))
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, names[i]);
		if ((rc = nnp_json_load(src, &j)))
			return rc;
		rc = nnp_json_write_file(j, path, 4, 0, 1);
		json_decref(j);
		if (rc)
			return rc;
	}
	return NNP_OK;
}

static int mkdirs(const char *path)
{
	char tmp[4200];
	snprintf(tmp, sizeof tmp, "%s", path);
	for (char *p = tmp + 1; *p; p++)
		if (*p == '/') {
			*p = '\0';
			if (mkdir(tmp, 0777) && errno != EEXIST)
				return nnp_err(NNP_EIO, "cannot create '%s': %s", tmp, strerror(errno));
			*p = '/';
		}
	if (mkdir(tmp, 0777) && errno != EEXIST)
		return nnp_err(NNP_EIO, "cannot create '%s': %s", tmp, strerror(errno));
	return NNP_OK;
}

static int start_state(struct trainer *t, int *finished)
{
	char path[4200];
	const char *name = t->c->resume || t->c->val_only ? resume_name(t, path, sizeof path) : NULL;
	int rc;
	*finished = 0;
	if (t->c->val_only && (!name || strcmp(name, "checkpoint_final")))
		return nnp_err(NNP_EDATA, "--val: '%s/checkpoint_final.nnpm' does not exist", t->c->out_dir);
	if (!t->c->resume && !t->c->val_only && ckpt_path(t, "checkpoint_latest", path, sizeof path) == NNP_OK &&
	    (nnp_is_file(path) || (!ckpt_path(t, "checkpoint_final", path, sizeof path) && nnp_is_file(path))))
		return nnp_err(NNP_EUSAGE, "'%s' already holds a training: --continue resumes it", t->c->out_dir);
	if (name) {
		if ((rc = nnp_model_file_visit(path, NULL, ckpt_visit, t)))
			return rc;
		*finished = !strcmp(name, "checkpoint_final");
		nnp_info("resuming from %s at epoch %d, iteration %d", path, t->epoch, t->iter0);
		return NNP_OK;
	}
	if (t->c->resume)
		nnp_warn("--continue: no checkpoint in '%s', starting from scratch", t->c->out_dir);
	if ((rc = nnp_tnet_create(&t->g, NULL, (uint32_t)t->c->seed, &t->net)))
		return rc;
	return sgd_setup(t);
}

static int train_loop(struct trainer *t)
{
	int rc = NNP_OK;
	if (t->c->train_stream && (rc = stream_open_path(t->c->train_stream, &t->train_in)))
		return rc;
	while (t->epoch < t->c->epochs && !(rc = run_epoch(t)))
		;
	if (rc == NNP_TRAIN_STOPPED) {
		nnp_info("stopped: checkpoint at epoch %d, iteration %d (--continue resumes there)", t->epoch, t->iter0);
		rc = ckpt_write(t, "checkpoint_latest", 0);
		if (!rc)
			rc = NNP_TRAIN_STOPPED;
	}
	stream_close(&t->train_in);
	return rc;
}

static void trainer_release(struct trainer *t)
{
	for (int h = 0; h < NNP_NET_MAX_STAGES; h++) {
		free(t->out[h]);
		free(t->grad[h]);
		free(t->segds[h]);
	}
	free(t->img);
	free(t->seg);
	nnp_sgd_release(&t->sgd);
	free(t->params);
	free(t->dice_buf);
	free(t->regt);
	free(t->reg_len);
	free(t->reg_labels);
	nnp_strv_free(t->class_names, (size_t)t->nfg);
	nnp_trainlog_release(&t->log);
	nnp_tnet_free(t->net);
	nnp_net_graph_release(&t->g);
	json_decref(t->plans);
	json_decref(t->dataset);
}

/* splits_final.json: nnU-Net's trainer makes it on first use (do_split),
 * KFold(5, seed 12345) over the preprocessed cases of this configuration. */
static int ensure_splits(const struct trainer *t)
{
	struct nnp_split_opts o;
	struct nnp_split_result r;
	char data[512];
	int rc;
	if (!strcmp(t->c->fold, "all") || t->c->train_stream)
		return NNP_OK;
	data_folder(t, data, sizeof data);
	memset(&o, 0, sizeof o);
	o.dir = t->c->pre_dir;
	o.data = data;
	o.write = 1;
	o.folds = 5;
	o.seed = 12345;
	if ((rc = nnp_split_make(&o, &r)))
		return rc;
	if (r.action == NNP_SPLIT_CREATED)
		nnp_info("created %s (5-fold cross-validation of %zu cases)", r.out, r.ncases);
	nnp_split_result_release(&r);
	return NNP_OK;
}

int nnp_train_run(const struct nnp_train_cfg *c)
{
	struct trainer t;
	char path[4200];
	int rc, finished;

	memset(&t, 0, sizeof t);
	t.c = c;
	t.best_ema = t.ema = NAN;
	if ((rc = load_jsons(&t)) || (rc = setup_config(&t)) || (rc = check_memory(&t)) || (rc = ensure_splits(&t)) ||
	    (rc = mkdirs(c->out_dir)) ||
	    (rc = copy_to_model_folder(&t)) || (rc = setup_classes(&t)) || (rc = start_state(&t, &finished)) ||
	    (rc = setup_buffers(&t)) || (c->device >= 0 && (rc = nnp_tnet_set_device(t.net, c->device))))
		goto out;
	if (!finished && !c->val_only) {
		nnp_info("training %s fold %s: %d epochs x %d iterations, batch %d, patch %lld x %lld x %lld, %lld parameters",
			 c->config, c->fold, c->epochs, c->iters, t.B, (long long)t.patch[0], (long long)t.patch[1],
			 (long long)t.patch[2], (long long)nnp_tnet_param_count(t.net));
		if ((rc = train_loop(&t)))
			goto out;
		if ((rc = ckpt_write(&t, "checkpoint_final", 1)))
			goto out;
		if (!ckpt_path(&t, "checkpoint_latest", path, sizeof path))
			unlink(path);
	}
	if (c->final_val || c->val_only)
		rc = final_validation(&t);
out:
	trainer_release(&t);
	return rc;
}
