// Placeholder: filled by the hash kernel work.
namespace pccl::kernels {}
