// Placeholder: filled by the quantize kernel work.
namespace pccl::kernels {}
