/* test_net.c — the network engine against nnU-Net's own forward passes.
 *
 * forward_fold0/ holds one forward pass of the fold-0 network of the tiny
 * 901 and 903 models (PyTorch, float32, eval mode, deep supervision off) on
 * a fixed RandomState(4321) input; PyTorch's own fp32-vs-fp64 deviation is
 * rel-L2 1.2e-6, the engine must be within 1e-5.  Also: the graph's
 * structure and parameter names, ResEnc graphs, the refusals of a model
 * folder with missing or mis-shaped tensors.
 */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../common/engine.h"
#include "../../common/err.h"
#include "../../common/frame.h"
#include "../../common/json.h"
#include "../../common/model.h"
#include "../../common/net.h"
#include "synth_params.h"
#include "../../common/nifti.h"
#include "../../common/pth.h"

#define RES901 "tests/fixtures/results/Dataset901_Spheres/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
#define RES903 "tests/fixtures/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
#define FWD901 "tests/fixtures/inference/Dataset901_Spheres/forward_fold0/"
#define FWD903 "tests/fixtures/inference/Dataset903_MultiChannel/forward_fold0/"

static void rel_l2(const float *a, const float *b, size_t n, double *rel, double *maxabs)
{
	double num = 0, den = 0, mx = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		num += d * d;
		den += (double)b[i] * b[i];
		if (fabs(d) > mx)
			mx = fabs(d);
	}
	*rel = sqrt(num / den);
	*maxabs = mx;
}

static void open_model(const char *dir, const char *fold, enum nnp_precision prec, struct nnp_model **m)
{
	const char *folds[] = { fold };
	struct nnp_model_opts o = { folds, 1, NULL, NULL, { -1, prec } };
	int rc = nnp_model_open(dir, &o, m);
	if (rc)
		fprintf(stderr, "%s\n", nnp_err_msg());
	assert_int_equal(rc, NNP_OK);
}

static void forward_case_prec(const char *res, const char *fwd, double tol, enum nnp_precision prec)
{
	char p[512];
	struct nnp_vol in, ref;
	struct nnp_model *m;
	float *out;
	double rel, mx;
	int64_t sp[3];
	size_t nout;

	if (prec == NNP_PREC_BF16) {
		const char *folds[] = { "0" };
		struct nnp_model_opts o = { folds, 1, NULL, NULL, { -1, prec } };
		int rc = nnp_model_open(res, &o, &m);
		if (rc == NNP_EUSAGE && strstr(nnp_err_msg(), "BF16")) {
			fprintf(stderr, "# skipped: %s\n", nnp_err_msg());
			return;
		}
		assert_int_equal(rc, NNP_OK);
	} else {
		open_model(res, "0", prec, &m);
	}
	snprintf(p, sizeof p, "%sinput.nii.gz", fwd);
	assert_int_equal(nnp_nifti_read_volume(p, &in), NNP_OK);
	snprintf(p, sizeof p, "%soutput.nii.gz", fwd);
	assert_int_equal(nnp_nifti_read_volume(p, &ref), NNP_OK);
	assert_int_equal(in.f.dtype, NNP_F32);
	assert_int_equal(in.f.shape[0], m->arch.in_channels);
	assert_int_equal(ref.f.shape[0], m->arch.num_classes);
	for (int d = 0; d < 3; d++)
		sp[d] = in.f.shape[1 + d];
	nout = (size_t)nnp_frame_nvox(&ref.f) * (size_t)ref.f.shape[0];
	out = calloc(nout, sizeof *out);
	assert_non_null(out);
	assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, in.data, out), NNP_OK);
	rel_l2(out, ref.data, nout, &rel, &mx);
	fprintf(stderr, "# %s %s: rel-L2 %.3g, max abs %.3g\n", fwd, prec == NNP_PREC_BF16 ? "bf16" : "fp32", rel, mx);
	assert_true(rel <= tol);
	/* a second run of the cached plan gives the same bits */
	{
		float *again = calloc(nout, sizeof *again);
		assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, in.data, again), NNP_OK);
		assert_memory_equal(out, again, nout * sizeof *out);
		free(again);
	}
	free(out);
	nnp_vol_release(&in);
	nnp_vol_release(&ref);
	nnp_model_free(m);
}

static void forward_case(const char *res, const char *fwd, double tol)
{
	forward_case_prec(res, fwd, tol, NNP_PREC_FP32);
}

/* bf16 convolutions (AMX / AVX-512 BF16): bfloat16 has 8 bits of mantissa,
 * so rel-L2 of the logits is of the order of 1e-2 after ~20 layers. */
static void test_forward_bf16(void **state)
{
	(void)state;
	forward_case_prec(RES901, FWD901, 3e-2, NNP_PREC_BF16);
	forward_case_prec(RES903, FWD903, 3e-2, NNP_PREC_BF16);
}

static void test_forward_901(void **state)
{
	(void)state;
	forward_case(RES901, FWD901, 1e-5);
}

static void test_forward_903(void **state)
{
	(void)state;
	forward_case(RES903, FWD903, 1e-5);
}

/* A batch of two inputs gives each input's own result (per-sample norms). */
static void test_batch(void **state)
{
	struct nnp_model *m;
	int64_t sp[3] = { 16, 32, 32 };
	size_t nin = 2 * 16 * 32 * 32, nout = 3 * 16 * 32 * 32;
	float *in = malloc(2 * nin * sizeof *in), *out = malloc(2 * nout * sizeof *out);
	float *one = malloc(nout * sizeof *one);
	double rel, mx;
	(void)state;
	open_model(RES903, "0", NNP_PREC_FP32, &m);
	for (size_t i = 0; i < 2 * nin; i++)
		in[i] = (float)sin((double)i * 0.37) * (i < nin ? 1.0f : 3.0f) + (i < nin ? 0.0f : 2.0f);
	assert_int_equal(nnp_engine_forward(m->engines[0], 2, sp, in, out), NNP_OK);
	for (int b = 0; b < 2; b++) {
		assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, in + b * nin, one), NNP_OK);
		rel_l2(out + b * nout, one, nout, &rel, &mx);
		assert_true(rel < 1e-6);
	}
	free(in);
	free(out);
	free(one);
	nnp_model_free(m);
}

/* The network without its head, then the head (1x1 conv) applied by hand,
 * gives the logits: what feature accumulation in predict.c relies on. */
static void test_features_then_head(void **state)
{
	struct nnp_model *m;
	int64_t sp[3] = { 16, 32, 32 };
	size_t nv = 16 * 32 * 32;
	float *in = malloc(2 * nv * sizeof *in), *lg = malloc(3 * nv * sizeof *lg), *ft, *mine;
	const float *w, *b;
	int F, K;
	double rel, mx;
	(void)state;
	open_model(RES903, "0", NNP_PREC_FP32, &m);
	assert_int_equal(nnp_engine_head(m->engines[0], &F, &K, &w, &b), NNP_OK);
	assert_int_equal(F, 4);
	assert_int_equal(K, 3);
	ft = malloc((size_t)F * nv * sizeof *ft);
	mine = malloc((size_t)K * nv * sizeof *mine);
	for (size_t i = 0; i < 2 * nv; i++)
		in[i] = (float)sin((double)i * 0.23);
	assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, in, lg), NNP_OK);
	assert_int_equal(nnp_engine_forward_features(m->engines[0], 1, sp, in, ft), NNP_OK);
	for (int k = 0; k < K; k++)
		for (size_t v = 0; v < nv; v++) {
			double t = b[k];
			for (int c = 0; c < F; c++)
				t += (double)w[k * F + c] * ft[c * nv + v];
			mine[k * nv + v] = (float)t;
		}
	rel_l2(mine, lg, (size_t)K * nv, &rel, &mx);
	assert_true(rel < 1e-6);
	/* and back to logits: the cached plan switches modes correctly */
	assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, in, mine), NNP_OK);
	assert_memory_equal(mine, lg, (size_t)K * nv * sizeof *lg);
	free(in), free(lg), free(ft), free(mine);
	nnp_model_free(m);
}

static void test_bad_shape(void **state)
{
	struct nnp_model *m;
	int64_t sp[3] = { 16, 30, 32 };
	float x[16];
	(void)state;
	open_model(RES903, "0", NNP_PREC_FP32, &m);
	assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, x, x), NNP_EUSAGE);
	assert_non_null(strstr(nnp_err_msg(), "multiple of the total stride"));
	nnp_model_free(m);
}

/* Graph structure for the 901 plans: names and shapes of every parameter
 * are exactly the checkpoint's canonical keys. */
static void test_graph_names(void **state)
{
	struct nnp_pth *p;
	struct nnp_model *m;
	int nparam = 0, found = 0;
	(void)state;
	open_model(RES901, "0", NNP_PREC_FP32, &m);
	assert_int_equal(nnp_pth_load(RES901 "/fold_0/checkpoint_final.pth", &p), NNP_OK);
	for (int i = 0; i < m->graph.nops; i++) {
		const struct nnp_op *op = &m->graph.ops[i];
		const char *sfx[2] = { "weight", "bias" };
		if (op->kind == NNP_OP_ADD_ACT || op->kind == NNP_OP_AVGPOOL)
			continue;
		for (int s = 0; s < 2; s++) {
			char name[160];
			int64_t shape[5];
			int nd = nnp_net_param_shape(&m->graph, op, sfx[s], shape);
			const struct nnp_pth_tensor *t;
			if (s == 1 && op->kind != NNP_OP_NORM_ACT && !op->has_bias)
				continue;
			snprintf(name, sizeof name, "%s.%s", op->w, sfx[s]);
			nparam++;
			t = nnp_pth_find(p, name);
			assert_non_null(t);
			assert_int_equal(t->ndim, nd);
			assert_memory_equal(t->shape, shape, (size_t)nd * sizeof *shape);
			found++;
		}
	}
	/* 901 tiny: 5 encoder stages x 2 convs + 4 decoder stages x 2 convs = 18 conv+norm
	   (4 params each), 4 transposed convs (2), 1 head (2) */
	assert_int_equal(nparam, 18 * 4 + 4 * 2 + 2);
	assert_int_equal(found, nparam);
	nnp_pth_free(p);
	nnp_model_free(m);
}

static json_t *resenc_arch(void)
{
	json_error_t e;
	return json_loads(
		"{\"network_class_name\":\"dynamic_network_architectures.architectures.unet.ResidualEncoderUNet\","
		"\"arch_kwargs\":{\"n_stages\":3,\"features_per_stage\":[4,8,16],"
		"\"conv_op\":\"torch.nn.modules.conv.Conv3d\",\"kernel_sizes\":[[3,3,3],[3,3,3],[3,3,3]],"
		"\"strides\":[[1,1,1],[2,2,2],[1,2,2]],\"n_blocks_per_stage\":[1,2,1],"
		"\"n_conv_per_stage_decoder\":[1,1],\"conv_bias\":true,"
		"\"norm_op\":\"torch.nn.modules.instancenorm.InstanceNorm3d\",\"norm_op_kwargs\":{\"eps\":1e-05,\"affine\":true},"
		"\"dropout_op\":null,\"dropout_op_kwargs\":null,\"nonlin\":\"torch.nn.LeakyReLU\","
		"\"nonlin_kwargs\":{\"inplace\":true}}}",
		0, &e);
}

static int has_op(const struct nnp_net_graph *g, const char *w)
{
	for (int i = 0; i < g->nops; i++)
		if (!strcmp(g->ops[i].w, w))
			return 1;
	return 0;
}

static void test_resenc_graph(void **state)
{
	json_t *a = resenc_arch();
	struct nnp_net_arch arch;
	struct nnp_net_graph g;
	(void)state;
	assert_non_null(a);
	assert_int_equal(nnp_net_arch_parse(a, 2, 3, &arch), NNP_OK);
	assert_int_equal(arch.cls, NNP_NET_RESENC);
	assert_int_equal(nnp_net_graph_build(&arch, &g), NNP_OK);
	assert_true(has_op(&g, "encoder.stem.convs.0.conv"));
	assert_true(has_op(&g, "encoder.stages.0.blocks.0.conv1.conv"));
	assert_true(has_op(&g, "encoder.stages.0.blocks.0.conv2.norm"));
	/* stage 1 block 0: stride 2 and 4 -> 8 channels: avgpool then projection */
	assert_true(has_op(&g, "encoder.stages.1.blocks.0.skip.0"));
	assert_true(has_op(&g, "encoder.stages.1.blocks.0.skip.1.conv"));
	assert_false(has_op(&g, "encoder.stages.1.blocks.1.skip.1.conv"));
	/* stage 0 block 0: 4 -> 4 without stride: identity skip */
	assert_false(has_op(&g, "encoder.stages.0.blocks.0.skip.0.conv"));
	assert_true(has_op(&g, "decoder.transpconvs.1"));
	assert_true(has_op(&g, "decoder.seg_layers.1"));
	assert_false(has_op(&g, "decoder.seg_layers.0"));
	nnp_net_graph_release(&g);
	json_decref(a);
}


static void test_resenc_forward(void **state)
{
	json_t *a = resenc_arch();
	struct nnp_net_arch arch;
	struct nnp_net_graph g;
	struct synth s = { { 0 }, 0 };
	struct nnp_param_src src = { &s, synth_get };
	struct nnp_engine_opts eo = { -1, NNP_PREC_FP32 };
	struct nnp_engine *e;
	int64_t sp[3] = { 8, 16, 16 };
	size_t nv = 8 * 16 * 16;
	float *in = malloc(2 * nv * sizeof *in), *out = malloc(3 * nv * sizeof *out);
	double sum = 0;
	(void)state;
	assert_int_equal(nnp_net_arch_parse(a, 2, 3, &arch), NNP_OK);
	assert_int_equal(nnp_net_graph_build(&arch, &g), NNP_OK);
	assert_int_equal(nnp_engine_create(&g, &src, &eo, &e), NNP_OK);
	for (size_t i = 0; i < 2 * nv; i++)
		in[i] = (float)cos((double)i * 0.11);
	assert_int_equal(nnp_engine_forward(e, 1, sp, in, out), NNP_OK);
	for (size_t i = 0; i < 3 * nv; i++) {
		assert_true(isfinite(out[i]));
		sum += fabs(out[i]);
	}
	assert_true(sum > 0);
	nnp_engine_free(e);
	synth_release(&s);
	nnp_net_graph_release(&g);
	json_decref(a);
	free(in);
	free(out);
}

static void test_arch_errors(void **state)
{
	json_t *a = resenc_arch(), *kw = json_object_get(a, "arch_kwargs");
	struct nnp_net_arch arch;
	(void)state;
	json_object_set_new(kw, "dropout_op", json_string("torch.nn.Dropout3d"));
	assert_int_equal(nnp_net_arch_parse(a, 1, 2, &arch), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "dropout_op"));
	json_object_set_new(kw, "dropout_op", json_null());
	json_object_set_new(kw, "features_per_stage", json_pack("[i,i]", 4, 8));
	assert_int_equal(nnp_net_arch_parse(a, 1, 2, &arch), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "features_per_stage"));
	json_object_set_new(a, "network_class_name", json_string("my.Net"));
	assert_int_equal(nnp_net_arch_parse(a, 1, 2, &arch), NNP_EDATA);
	assert_non_null(strstr(nnp_err_msg(), "my.Net"));
	json_decref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forward_901),  cmocka_unit_test(test_forward_903),
		cmocka_unit_test(test_forward_bf16),
		cmocka_unit_test(test_batch),        cmocka_unit_test(test_bad_shape),
		cmocka_unit_test(test_features_then_head),
		cmocka_unit_test(test_graph_names),  cmocka_unit_test(test_resenc_graph),
		cmocka_unit_test(test_resenc_forward), cmocka_unit_test(test_arch_errors),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
