/* test_net_cuda.c — the CUDA backend of the network engine (engine_cuda.h).
 *
 * Without a CUDA device (or in a GPU=0 build) every GPU test skips with a
 * message; only the refusal of a device that does not exist runs.  With
 * device 0:
 *   - forward_fold0 of the tiny 901 and 903 models (fixtures of test_net.c)
 *     within rel-L2 1e-5 of nnU-Net's PyTorch output, a second run of the
 *     cached plan bit-identical;
 *   - CPU vs GPU logits on the same random input: fp32 within rel-L2 1e-5;
 *     NNP_PREC_BF16 (on CUDA: TF32 tensor-core convolutions, docs/gpu.md)
 *     within 1e-2 (TF32 keeps 10 mantissa bits; the bound is deliberately
 *     loose until measured on a GPU, the value is printed);
 *   - a ResEnc network (avgpool, residual adds, 1x1 projections) and a 2D
 *     PlainConvUNet with synthetic weights, CPU vs GPU;
 *   - a batch of two equals two single forwards (per-sample norms), within
 *     rel-L2 1e-5 (the two shapes may get different cuDNN algorithms).
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
#include "../../common/gpu.h"
#include "../../common/json.h"
#include "../../common/model.h"
#include "../../common/net.h"
#include "synth_params.h"
#include "../../common/nifti.h"

#define RES901 "tests/fixtures/results/Dataset901_Spheres/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
#define RES903 "tests/fixtures/results/Dataset903_MultiChannel/nnUNetTrainer__nnUNetPlans_tiny__3d_fullres"
#define FWD901 "tests/fixtures/inference/Dataset901_Spheres/forward_fold0/"
#define FWD903 "tests/fixtures/inference/Dataset903_MultiChannel/forward_fold0/"

#define TOL_FP32 1e-5
#define TOL_TF32 1e-2

/* -DNNP_TEST_CUDA_ON_CPU: a self-check of this file's harness on a machine
 * without a GPU — the "GPU" engine is the CPU engine (device -1, and fp32
 * for the bf16/TF32 case), so every test runs and must pass trivially. */
#ifdef NNP_TEST_CUDA_ON_CPU
#define GPU_DEV (-1)
#define GPU_PREC(p) ((void)(p), NNP_PREC_FP32)
#else
#define GPU_DEV 0
#define GPU_PREC(p) (p)
#endif

/* 1 when device 0 exists; otherwise prints why and returns 0. */
static int have_gpu(void)
{
	int n = nnp_cuda_device_count();
#ifdef NNP_TEST_CUDA_ON_CPU
	fprintf(stderr, "# NNP_TEST_CUDA_ON_CPU: the CPU engine stands in for the GPU\n");
	return 1;
#endif
	if (n > 0)
		return 1;
	fprintf(stderr, "# skipped: no CUDA device (%s)\n", n < 0 ? nnp_err_msg() : "the driver reports none");
	return 0;
}

#define NEED_GPU()                   \
	do {                         \
		if (!have_gpu())     \
			skip();      \
	} while (0)

static double rel_l2(const float *a, const float *b, size_t n)
{
	double num = 0, den = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - b[i];
		num += d * d;
		den += (double)b[i] * b[i];
	}
	return sqrt(num / den);
}

static void open_model(const char *dir, int device, enum nnp_precision prec, struct nnp_model **m)
{
	const char *folds[] = { "0" };
	struct nnp_model_opts o = { folds, 1, NULL, NULL, { device, prec } };
	int rc = nnp_model_open(dir, &o, m);
	if (rc)
		fprintf(stderr, "%s\n", nnp_err_msg());
	assert_int_equal(rc, NNP_OK);
}

static void fill_random(float *x, size_t n, uint64_t seed)
{
	for (size_t i = 0; i < n; i++) {
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		x[i] = (float)((double)(seed >> 11) / 9007199254740992.0 * 4.0 - 2.0);
	}
}

static void forward_fixture(const char *res, const char *fwd)
{
	char p[512];
	struct nnp_vol in, ref;
	struct nnp_model *m;
	float *out, *again;
	int64_t sp[3];
	size_t nout;
	double rel;
	int rc;

	open_model(res, GPU_DEV, NNP_PREC_FP32, &m);
	snprintf(p, sizeof p, "%sinput.nii.gz", fwd);
	assert_int_equal(nnp_nifti_read_volume(p, &in), NNP_OK);
	snprintf(p, sizeof p, "%soutput.nii.gz", fwd);
	assert_int_equal(nnp_nifti_read_volume(p, &ref), NNP_OK);
	assert_int_equal(in.f.shape[0], m->arch.in_channels);
	assert_int_equal(ref.f.shape[0], m->arch.num_classes);
	for (int d = 0; d < 3; d++)
		sp[d] = in.f.shape[1 + d];
	nout = (size_t)nnp_frame_nvox(&ref.f) * (size_t)ref.f.shape[0];
	out = calloc(nout, sizeof *out);
	again = calloc(nout, sizeof *again);
	assert_non_null(out);
	assert_non_null(again);
	rc = nnp_engine_forward(m->engines[0], 1, sp, in.data, out);
	if (rc)
		fprintf(stderr, "%s\n", nnp_err_msg());
	assert_int_equal(rc, NNP_OK);
	rel = rel_l2(out, ref.data, nout);
	fprintf(stderr, "# %s cuda fp32: rel-L2 %.3g\n", fwd, rel);
	assert_true(rel <= TOL_FP32);
	assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, in.data, again), NNP_OK);
	assert_memory_equal(out, again, nout * sizeof *out);
	free(out);
	free(again);
	nnp_vol_release(&in);
	nnp_vol_release(&ref);
	nnp_model_free(m);
}

static void test_forward_901(void **state)
{
	(void)state;
	NEED_GPU();
	forward_fixture(RES901, FWD901);
}

static void test_forward_903(void **state)
{
	(void)state;
	NEED_GPU();
	forward_fixture(RES903, FWD903);
}

/* The same model on the CPU and on the GPU, one random input. */
static void cpu_vs_gpu_model(const char *res, const int64_t *sp, enum nnp_precision prec, double tol)
{
	struct nnp_model *mc, *mg;
	size_t nv = (size_t)(sp[0] * sp[1] * sp[2]), nin, nout;
	float *in, *oc, *og;
	double rel;
	int rc;

	open_model(res, -1, NNP_PREC_FP32, &mc);
	open_model(res, GPU_DEV, GPU_PREC(prec), &mg);
	nin = nv * (size_t)mc->arch.in_channels;
	nout = nv * (size_t)mc->arch.num_classes;
	in = malloc(nin * sizeof *in);
	oc = malloc(nout * sizeof *oc);
	og = malloc(nout * sizeof *og);
	assert_true(in && oc && og);
	fill_random(in, nin, 77);
	assert_int_equal(nnp_engine_forward(mc->engines[0], 1, sp, in, oc), NNP_OK);
	rc = nnp_engine_forward(mg->engines[0], 1, sp, in, og);
	if (rc)
		fprintf(stderr, "%s\n", nnp_err_msg());
	assert_int_equal(rc, NNP_OK);
	rel = rel_l2(og, oc, nout);
	fprintf(stderr, "# %s %lldx%lldx%lld: cpu fp32 vs cuda %s: rel-L2 %.3g\n", res, (long long)sp[0],
		(long long)sp[1], (long long)sp[2], prec == NNP_PREC_BF16 ? "bf16 (TF32)" : "fp32", rel);
	assert_true(rel <= tol);
	free(in);
	free(oc);
	free(og);
	nnp_model_free(mc);
	nnp_model_free(mg);
}

static void test_cpu_vs_gpu_fp32(void **state)
{
	const int64_t sp903[3] = { 16, 32, 32 }, sp901[3] = { 32, 32, 32 };
	(void)state;
	NEED_GPU();
	cpu_vs_gpu_model(RES903, sp903, NNP_PREC_FP32, TOL_FP32);
	cpu_vs_gpu_model(RES901, sp901, NNP_PREC_FP32, TOL_FP32);
}

static void test_cpu_vs_gpu_tf32(void **state)
{
	const int64_t sp903[3] = { 16, 32, 32 }, sp901[3] = { 32, 32, 32 };
	(void)state;
	NEED_GPU();
	cpu_vs_gpu_model(RES903, sp903, NNP_PREC_BF16, TOL_TF32);
	cpu_vs_gpu_model(RES901, sp901, NNP_PREC_BF16, TOL_TF32);
}

/* The features before the head (feature accumulation in predict.c): GPU
 * equals CPU, and the head weights are available on the GPU engine too. */
static void test_features(void **state)
{
	const int64_t sp[3] = { 16, 32, 32 };
	struct nnp_model *mc, *mg;
	size_t nv = 16 * 32 * 32, nin, nft;
	float *in, *fc, *fg;
	const float *w, *b;
	int F, K;
	(void)state;
	NEED_GPU();
	open_model(RES903, -1, NNP_PREC_FP32, &mc);
	open_model(RES903, GPU_DEV, GPU_PREC(NNP_PREC_FP32), &mg);
	assert_int_equal(nnp_engine_head(mg->engines[0], &F, &K, &w, &b), NNP_OK);
	assert_int_equal(K, mc->arch.num_classes);
	nin = nv * (size_t)mc->arch.in_channels;
	nft = nv * (size_t)F;
	in = malloc(nin * sizeof *in);
	fc = malloc(nft * sizeof *fc);
	fg = malloc(nft * sizeof *fg);
	assert_true(in && fc && fg);
	fill_random(in, nin, 5);
	assert_int_equal(nnp_engine_forward_features(mc->engines[0], 1, sp, in, fc), NNP_OK);
	assert_int_equal(nnp_engine_forward_features(mg->engines[0], 1, sp, in, fg), NNP_OK);
	assert_true(rel_l2(fg, fc, nft) <= TOL_FP32);
	free(in);
	free(fc);
	free(fg);
	nnp_model_free(mc);
	nnp_model_free(mg);
}

/* A batch of two inputs gives each input's own result. */
static void test_batch(void **state)
{
	struct nnp_model *m;
	int64_t sp[3] = { 16, 32, 32 };
	size_t nin = 2 * 16 * 32 * 32, nout = 3 * 16 * 32 * 32;
	float *in, *out, *one;
	(void)state;
	NEED_GPU();
	in = malloc(2 * nin * sizeof *in);
	out = malloc(2 * nout * sizeof *out);
	one = malloc(nout * sizeof *one);
	assert_true(in && out && one);
	open_model(RES903, GPU_DEV, NNP_PREC_FP32, &m);
	for (size_t i = 0; i < 2 * nin; i++)
		in[i] = (float)sin((double)i * 0.37) * (i < nin ? 1.0f : 3.0f) + (i < nin ? 0.0f : 2.0f);
	assert_int_equal(nnp_engine_forward(m->engines[0], 2, sp, in, out), NNP_OK);
	for (int b = 0; b < 2; b++) {
		double rel;
		assert_int_equal(nnp_engine_forward(m->engines[0], 1, sp, in + b * nin, one), NNP_OK);
		rel = rel_l2(out + b * nout, one, nout);
		fprintf(stderr, "# batch of 2, sample %d vs single: rel-L2 %.3g\n", b, rel);
		/* not bitwise: batch 1 and 2 may get different cuDNN algorithms
		 * (different summation orders) */
		assert_true(rel < TOL_FP32);
	}
	free(in);
	free(out);
	free(one);
	nnp_model_free(m);
}

/* ---- synthetic networks: ResEnc 3D and PlainConvUNet 2D ---- */


static const char *RESENC3D =
	"{\"network_class_name\":\"dynamic_network_architectures.architectures.unet.ResidualEncoderUNet\","
	"\"arch_kwargs\":{\"n_stages\":3,\"features_per_stage\":[4,8,16],"
	"\"conv_op\":\"torch.nn.modules.conv.Conv3d\",\"kernel_sizes\":[[3,3,3],[3,3,3],[3,3,3]],"
	"\"strides\":[[1,1,1],[2,2,2],[1,2,2]],\"n_blocks_per_stage\":[1,2,1],"
	"\"n_conv_per_stage_decoder\":[1,1],\"conv_bias\":true,"
	"\"norm_op\":\"torch.nn.modules.instancenorm.InstanceNorm3d\",\"norm_op_kwargs\":{\"eps\":1e-05,\"affine\":true},"
	"\"dropout_op\":null,\"dropout_op_kwargs\":null,\"nonlin\":\"torch.nn.LeakyReLU\","
	"\"nonlin_kwargs\":{\"inplace\":true}}}";

static const char *PLAIN2D =
	"{\"network_class_name\":\"dynamic_network_architectures.architectures.unet.PlainConvUNet\","
	"\"arch_kwargs\":{\"n_stages\":4,\"features_per_stage\":[8,16,32,32],"
	"\"conv_op\":\"torch.nn.modules.conv.Conv2d\",\"kernel_sizes\":[[3,3],[3,3],[3,3],[3,3]],"
	"\"strides\":[[1,1],[2,2],[2,2],[1,2]],\"n_conv_per_stage\":[2,2,2,2],"
	"\"n_conv_per_stage_decoder\":[2,2,2],\"conv_bias\":true,"
	"\"norm_op\":\"torch.nn.modules.instancenorm.InstanceNorm2d\",\"norm_op_kwargs\":{\"eps\":1e-05,\"affine\":true},"
	"\"dropout_op\":null,\"dropout_op_kwargs\":null,\"nonlin\":\"torch.nn.LeakyReLU\","
	"\"nonlin_kwargs\":{\"inplace\":true}}}";

static void cpu_vs_gpu_synth(const char *arch_json, int cin, int k, const int64_t *sp, int batch)
{
	json_error_t je;
	json_t *a = json_loads(arch_json, 0, &je);
	struct nnp_net_arch arch;
	struct nnp_net_graph g;
	struct synth s = { { 0 }, 0 };
	struct nnp_param_src src = { &s, synth_get };
	struct nnp_engine_opts co = { -1, NNP_PREC_FP32 }, go = { GPU_DEV, NNP_PREC_FP32 };
	struct nnp_engine *ec, *eg;
	size_t nv = 1, nin, nout;
	float *in, *oc, *og;
	double rel;
	int rc;

	assert_non_null(a);
	assert_int_equal(nnp_net_arch_parse(a, cin, k, &arch), NNP_OK);
	assert_int_equal(nnp_net_graph_build(&arch, &g), NNP_OK);
	for (int d = 0; d < arch.ndim; d++)
		nv *= (size_t)sp[d];
	nin = (size_t)batch * (size_t)cin * nv;
	nout = (size_t)batch * (size_t)k * nv;
	in = malloc(nin * sizeof *in);
	oc = malloc(nout * sizeof *oc);
	og = malloc(nout * sizeof *og);
	assert_true(in && oc && og);
	fill_random(in, nin, 1234);
	assert_int_equal(nnp_engine_create(&g, &src, &co, &ec), NNP_OK);
	rc = nnp_engine_create(&g, &src, &go, &eg);
	if (rc)
		fprintf(stderr, "%s\n", nnp_err_msg());
	assert_int_equal(rc, NNP_OK);
	assert_int_equal(nnp_engine_forward(ec, batch, sp, in, oc), NNP_OK);
	rc = nnp_engine_forward(eg, batch, sp, in, og);
	if (rc)
		fprintf(stderr, "%s\n", nnp_err_msg());
	assert_int_equal(rc, NNP_OK);
	rel = rel_l2(og, oc, nout);
	fprintf(stderr, "# synthetic %dD %s batch %d: cpu vs cuda fp32 rel-L2 %.3g\n", arch.ndim,
		arch.cls == NNP_NET_RESENC ? "ResEnc" : "PlainConvUNet", batch, rel);
	assert_true(rel <= TOL_FP32);
	nnp_engine_free(ec);
	nnp_engine_free(eg);
	synth_release(&s);
	nnp_net_graph_release(&g);
	json_decref(a);
	free(in);
	free(oc);
	free(og);
}

static void test_resenc_3d(void **state)
{
	const int64_t sp[3] = { 8, 16, 16 };
	(void)state;
	NEED_GPU();
	cpu_vs_gpu_synth(RESENC3D, 2, 3, sp, 2);
}

static void test_plain_2d(void **state)
{
	const int64_t sp[2] = { 32, 64 };
	(void)state;
	NEED_GPU();
	cpu_vs_gpu_synth(PLAIN2D, 1, 2, sp, 2);
}

/* A device that does not exist (or no CUDA at all) is a usage error; runs
 * everywhere. */
static void test_bad_device(void **state)
{
	json_error_t je;
	json_t *a = json_loads(PLAIN2D, 0, &je);
	struct nnp_net_arch arch;
	struct nnp_net_graph g;
	struct synth s = { { 0 }, 0 };
	struct nnp_param_src src = { &s, synth_get };
	struct nnp_engine_opts o = { 999, NNP_PREC_FP32 };
	struct nnp_engine *e = (struct nnp_engine *)&o;
	int n = nnp_cuda_device_count();
	(void)state;
	assert_non_null(a);
	assert_int_equal(nnp_net_arch_parse(a, 1, 2, &arch), NNP_OK);
	assert_int_equal(nnp_net_graph_build(&arch, &g), NNP_OK);
	if (n <= 0)
		o.device = 0;
	assert_int_equal(nnp_engine_create(&g, &src, &o, &e), NNP_EUSAGE);
	assert_null(e);
	fprintf(stderr, "# device cuda:%d refused: %s\n", o.device, nnp_err_msg());
#ifdef NNP_HAVE_CUDA
	assert_non_null(strstr(nnp_err_msg(), "does not exist"));
#else
	assert_non_null(strstr(nnp_err_msg(), "no CUDA support"));
#endif
	synth_release(&s);
	nnp_net_graph_release(&g);
	json_decref(a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_bad_device),
		cmocka_unit_test(test_forward_901),     cmocka_unit_test(test_forward_903),
		cmocka_unit_test(test_cpu_vs_gpu_fp32), cmocka_unit_test(test_cpu_vs_gpu_tf32),
		cmocka_unit_test(test_batch),           cmocka_unit_test(test_resenc_3d),
		cmocka_unit_test(test_plain_2d),        cmocka_unit_test(test_features),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
