/* test_archs.h — the small networks of the training-network tests
 * (test_trainnet.c, test_trainnet_cuda.c): plans "architecture" entries
 * covering kernels 1 and 3 per axis, strides 1 and 2 per axis (anisotropic
 * first stages), 2D and 3D, PlainConvUNet and ResidualEncoderUNet. */
#ifndef NNP_TEST_ARCHS_H
#define NNP_TEST_ARCHS_H

static const char *plain3d =
	"{\"network_class_name\":\"dynamic_network_architectures.architectures.unet.PlainConvUNet\","
	"\"arch_kwargs\":{\"n_stages\":3,\"features_per_stage\":[4,6,8],"
	"\"conv_op\":\"torch.nn.modules.conv.Conv3d\",\"kernel_sizes\":[[1,3,3],[3,3,3],[3,1,3]],"
	"\"strides\":[[1,1,1],[1,2,2],[2,2,1]],\"n_conv_per_stage\":[2,2,1],"
	"\"n_conv_per_stage_decoder\":[1,2],\"conv_bias\":true,"
	"\"norm_op\":\"torch.nn.modules.instancenorm.InstanceNorm3d\",\"norm_op_kwargs\":{\"eps\":1e-05,\"affine\":true},"
	"\"dropout_op\":null,\"dropout_op_kwargs\":null,\"nonlin\":\"torch.nn.LeakyReLU\","
	"\"nonlin_kwargs\":{\"inplace\":true}}}";

static const char *plain2d =
	"{\"network_class_name\":\"dynamic_network_architectures.architectures.unet.PlainConvUNet\","
	"\"arch_kwargs\":{\"n_stages\":4,\"features_per_stage\":[4,8,8,12],"
	"\"conv_op\":\"torch.nn.modules.conv.Conv2d\",\"kernel_sizes\":[[3,3],[3,3],[3,1],[1,3]],"
	"\"strides\":[[1,1],[2,2],[2,1],[1,2]],\"n_conv_per_stage\":[2,2,2,2],"
	"\"n_conv_per_stage_decoder\":[2,2,2],\"conv_bias\":true,"
	"\"norm_op\":\"torch.nn.modules.instancenorm.InstanceNorm2d\",\"norm_op_kwargs\":{\"eps\":1e-05,\"affine\":true},"
	"\"dropout_op\":null,\"dropout_op_kwargs\":null,\"nonlin\":\"torch.nn.LeakyReLU\","
	"\"nonlin_kwargs\":{\"inplace\":true}}}";

static const char *resenc3d =
	"{\"network_class_name\":\"dynamic_network_architectures.architectures.unet.ResidualEncoderUNet\","
	"\"arch_kwargs\":{\"n_stages\":3,\"features_per_stage\":[4,8,8],"
	"\"conv_op\":\"torch.nn.modules.conv.Conv3d\",\"kernel_sizes\":[[3,3,3],[3,3,3],[1,3,3]],"
	"\"strides\":[[1,1,1],[2,2,2],[1,2,2]],\"n_blocks_per_stage\":[1,2,1],"
	"\"n_conv_per_stage_decoder\":[1,1],\"conv_bias\":true,"
	"\"norm_op\":\"torch.nn.modules.instancenorm.InstanceNorm3d\",\"norm_op_kwargs\":{\"eps\":1e-05,\"affine\":true},"
	"\"dropout_op\":null,\"dropout_op_kwargs\":null,\"nonlin\":\"torch.nn.LeakyReLU\","
	"\"nonlin_kwargs\":{\"inplace\":true}}}";

#endif
