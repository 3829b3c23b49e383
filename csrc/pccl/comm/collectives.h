// Collectives: the operations a peer runs with its group over the ring its Session
// keeps. Today the all-reduce (ring, or quantized ring), blocking or on a thread of its own.
//
// An all-reduce, step by step: bind it to the current ring (Session::BindRing: the OpKey of
// ring epoch, group, tag and the tag's next sequence number); run the algorithm
// (algo/ring_allreduce.h or algo/quantized_allreduce.h) over the ring's channel for that
// key (link/ring_op.h), with scratch memory from the buffer pool; report the outcome to
// the master and wait for the group's verdict (Session::AwaitVerdict). Every peer applies
// the result only if every peer succeeded; otherwise the caller's input is restored (in
// place too), so the retry computes the same result.
//
// Thread-safety: every method may be called from any thread; concurrent all-reduces need
// distinct tags.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>

#include "pccl/comm/buffer_pool.h"
#include "pccl/comm/session.h"
#include "pccl/common/clock.h"
#include "pccl/common/dtype.h"
#include "pccl/common/status.h"
#include "pccl/kernels/quantize.h"
#include "pccl/kernels/reduce.h"

namespace pccl::comm {

struct AllReduceRequest {
  const void* send = nullptr;
  void* recv = nullptr;  // may equal send (in place)
  size_t count = 0;
  DType dtype = DType::kFloat32;
  kernels::ReduceOp op = kernels::ReduceOp::kSum;
  uint64_t tag = 0;
  // algorithm kNone: exact all-reduce; otherwise segments travel quantized
  // (algo/quantized_allreduce.h).
  kernels::QuantizeOptions quant{kernels::QuantAlgorithm::kNone};
  // Nonzero: the buffers hold uint32 residues mod this modulus and the sum is taken mod it
  // (kernels/modular.h, ModAdd): integer arithmetic, so every peer's result is the same
  // whatever the ring order (pccl.ReduceMode.EXACT encodes floats this way).
  uint32_t modulus = 0;
};

struct ReduceInfo {
  uint32_t local_world_size = 0;
  uint64_t tx_bytes = 0;
  uint64_t rx_bytes = 0;
};

class Collectives;

// An all-reduce running on its own thread (Collectives::StartAllReduce). The caller keeps
// the buffers alive and untouched until Wait() returns. Destroying it waits for the op.
class AsyncAllReduce {
 public:
  ~AsyncAllReduce();
  AsyncAllReduce(const AsyncAllReduce&) = delete;
  AsyncAllReduce& operator=(const AsyncAllReduce&) = delete;
  // Blocks until the operation is done; its status and, on success, its info.
  Status Wait(ReduceInfo* info);
  bool done();

 private:
  friend class Collectives;
  AsyncAllReduce(Collectives* collectives, AllReduceRequest request, RingBinding bound,
                 Deadline deadline);
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  Status status_;
  ReduceInfo info_;
  std::thread thread_;  // last: starts once the members it writes exist
};

class Collectives {
 public:
  explicit Collectives(Session& session) : session_(session) {}
  Collectives(const Collectives&) = delete;
  Collectives& operator=(const Collectives&) = delete;

  // Blocks until the all-reduce is done and every peer's verdict is in. On failure the
  // send buffer is intact (in place too) and recv holds no result.
  Status AllReduce(const AllReduceRequest& request, Deadline deadline, ReduceInfo* info);
  // Starts an all-reduce on its own thread. Concurrent ones need distinct tags. An
  // all-reduce that cannot start (bad request, too few peers, no master) fails here, with
  // the error AllReduce would return, and `started` stays empty.
  Status StartAllReduce(const AllReduceRequest& request, Deadline deadline,
                        std::unique_ptr<AsyncAllReduce>* started);

 private:
  friend class AsyncAllReduce;
  // An all-reduce in two halves: check the request and bind it to the current ring (on
  // the caller's thread); then run it there and wait for the verdict.
  Status Bind(const AllReduceRequest& request, Deadline deadline, RingBinding* bound);
  Status Execute(const AllReduceRequest& request, const RingBinding& bound, Deadline deadline,
                 ReduceInfo* info);

  Session& session_;
  BufferPool buffers_;  // staging and workspaces, reused across collectives
};

}  // namespace pccl::comm
