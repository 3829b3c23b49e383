// Placeholder: filled by the quantize kernel work.
namespace pccl::kernels::PCCL_ISA_NAME {}
