// Placeholder: filled by the modular kernel work.
namespace pccl::kernels {}
