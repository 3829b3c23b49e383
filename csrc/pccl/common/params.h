// Every environment knob of pccl, read in one place with its default and meaning.
// Thread-safe: values are read once, on first use.
#pragma once

#include <cstdint>
#include <string>

#include "pccl/common/clock.h"

namespace pccl {

struct Params {
  // PCCL_LOG_LEVEL: debug, info, warning (default), error, off.
  int log_level;
  // PCCL_SOCKET_BUFFER_BYTES: SO_SNDBUF/SO_RCVBUF for p2p data connections. 0 (default)
  // keeps Linux autotuning, which grows buffers to net.ipv4.tcp_{r,w}mem's maximum.
  int64_t socket_buffer_bytes;
  // PCCL_SEGMENT_BYTES: bytes per data frame of a ring step (default 1 MiB). Smaller
  // segments pipeline earlier; larger ones cost fewer headers and syscalls.
  int64_t segment_bytes;
  // PCCL_EARLY_BUDGET_BYTES: what one set of links (a ring's, a pair's) may hold for
  // segments that arrive before their operation starts on this peer (default 256 MiB);
  // beyond it the receiving connection waits, and TCP holds the sender back.
  int64_t early_budget_bytes;
  // PCCL_DEFAULT_POOL_SIZE: connections per ring neighbour when the user passes 0 (default
  // 8: on long links each connection is capped at window / RTT, and the WAN lab showed 8
  // reaching 93 % of a 400 Mbit/s link at 50 ms where 4 reached 59 %; loopback is the same).
  int64_t default_pool_size;
  // PCCL_TIMEOUT_MS: default deadline of one blocking call, e.g. an all-reduce or a
  // topology update (default 60000). 0: no default deadline (PCCL 1.0's behaviour): calls
  // wait as long as the master and the peers they wait for are alive.
  int64_t timeout_ms;
  // PCCL_CONNECT_TIMEOUT_MS: deadline of one TCP connect, name resolution included
  // (default 10000).
  int64_t connect_timeout_ms;
  // PCCL_POOL_KEEP_BYTES: scratch and backup buffers a Communicator keeps between
  // collectives for the next one (comm/buffer_pool.h); the rest is freed when a collective
  // ends. Default 512 MiB: an in-place 256 MiB float32 all-reduce needs twice its tensor,
  // and making that again per call costs page faults on every call. 0 frees everything.
  // Besides, the process keeps up to min(this, 64 MiB) of blocks for segments that arrive
  // early (link/block_cache.h).
  int64_t pool_keep_bytes;
  // PCCL_MASTER_RESUME_S: how long a peer that lost the master (it died, was restarted or
  // stalled) keeps reconnecting to the same address before it gives the run up; the run
  // resumes when the master is back (master/admission.cc, "Resuming"). Default 60; 0: a
  // lost master ends the run for this peer at once (every call fails with Unavailable).
  int64_t master_resume_s;
  // PCCL_TCP_USER_TIMEOUT_MS: TCP_USER_TIMEOUT of every connection: data unacknowledged
  // this long (a partition, a peer's machine gone) fails the connection instead of letting
  // TCP retransmit for many minutes (default 20000; 0 keeps the kernel's).
  int64_t tcp_user_timeout_ms;
  // PCCL_KEEPALIVE_S: TCP keepalive of every connection: a probe after this many seconds
  // idle and every third of it (at least every second) after; the connection fails when
  // nothing answers for PCCL_TCP_USER_TIMEOUT_MS. Keeps NAT and firewall mappings alive
  // through idle minutes (default 5; 0: off).
  int64_t keepalive_s;
  // PCCL_PUNCH_MS: how long the two ends of a relayed connection try to open a direct one
  // by hole punching (TCP simultaneous open, link/routes.h) before they stay on the relay
  // (default 2000; 0: no hole punching).
  int64_t punch_ms;
  // PCCL_PROBE_MS (read by the master): how long each bandwidth probe of
  // optimize_topology() streams (default 300). Longer is more accurate on long fat pipes.
  int64_t probe_ms;
  // PCCL_BANDWIDTH_MAX_AGE_S (read by the master): a measured bandwidth older than this is
  // measured again by the next optimize_topology() (default 600).
  int64_t bandwidth_max_age_s;
  // PCCL_TEST_CORRUPT_STEP, for tests of ReduceMode.VERIFIED only: this process corrupts
  // one segment of what it sends at that step of every ReduceMode.VERIFIED sum
  // (algo::AllReduceOptions::corrupt_step). Default -1: never.
  int64_t test_corrupt_step;
  // PCCL_TEST_SILENT_RECEIVES, for tests of send/recv only: the first that many transfers
  // this process receives commit silently, with neither the ack to their sender nor the
  // report to the master (as if a link reset and a lost report took both): the sender
  // must learn the outcome through the master asking this process (PairQuery).
  // Default 0: none.
  int64_t test_silent_receives;
  // PCCL_TEST_DUMP_RECEIVED, for tests only: after every ReduceMode.VERIFIED sum this
  // process writes the reduce-scatter partials it received (uint32 residues, the sum's
  // element count of them; its own chunk, never received, unspecified) to this file, so a
  // test can look at what a peer sees. Default empty: never.
  std::string test_dump_received;
};

const Params& GetParams();

// The deadline of a blocking call that names none: PCCL_TIMEOUT_MS from now, or never.
Deadline DefaultCallDeadline();

}  // namespace pccl
