// Socket::MinRtt, in a file of its own: the kernel's tcpi_min_rtt is in <linux/tcp.h>'s
// struct tcp_info, not in glibc's <netinet/tcp.h> (which socket.cc uses), and the two
// headers cannot be included together.
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "pccl/net/socket.h"

namespace pccl::net {

bool Socket::MinRtt(uint32_t* rtt_us) const {
  struct tcp_info info;
  socklen_t length = sizeof(info);
  std::memset(&info, 0, sizeof(info));
  if (fd_ < 0 || getsockopt(fd_, IPPROTO_TCP, TCP_INFO, &info, &length) != 0) return false;
  // Older kernels return a shorter struct; ~0 is the kernel's "no sample yet".
  if (length < offsetof(struct tcp_info, tcpi_min_rtt) + sizeof(info.tcpi_min_rtt) ||
      info.tcpi_min_rtt == ~0u) {
    return false;
  }
  *rtt_us = info.tcpi_min_rtt;
  return true;
}

}  // namespace pccl::net
