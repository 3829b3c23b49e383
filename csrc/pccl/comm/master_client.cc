#include "pccl/comm/master_client.h"

#include <algorithm>

#include "pccl/common/logging.h"
#include "pccl/common/thread_name.h"
#include "pccl/net/wire.h"

namespace pccl::comm {

Status ErrorFromMaster(const std::string& payload) {
  proto::ErrorMessage error;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &error));
  return Status(StatusCodeFromWire(error.code, StatusCode::kInternal), "master: " + error.message);
}

Status VerdictFailure(const proto::Verdict& verdict) {
  return Status(StatusCodeFromWire(verdict.code, StatusCode::kAborted), verdict.reason);
}

namespace {
// Verdicts kept for collectives that have not asked for theirs yet.
constexpr size_t kVerdictMemory = 4096;
// How long a failed send waits for the reader to learn why the connection is gone.
constexpr auto kLostGrace = std::chrono::milliseconds(500);

// What a wait begun on a connection that Reconnect replaced returns.
Status Replaced() {
  return Status(StatusCode::kUnavailable,
                "master unavailable: the connection was lost and replaced (resuming the run)");
}
}  // namespace

MasterClient::~MasterClient() { Close(); }

std::optional<proto::Reachability> MasterClient::reachability() {
  std::lock_guard<std::mutex> lock(mu_);
  return reachability_;
}

Status MasterClient::WaitReachability(Deadline deadline, proto::Reachability* out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (!WaitFor(cv_, lock, deadline, [&] { return reachability_.has_value() || !lost_.ok(); })) {
    return Status(StatusCode::kDeadlineExceeded,
                  "the master has not answered whether this peer can be dialled");
  }
  if (!reachability_) return lost_;
  *out = *reachability_;
  return Status::Ok();
}

Status MasterClient::Dial(const net::Endpoint& master, const auth::RunAuth& auth,
                          Deadline deadline, net::Socket* out) {
  net::Socket socket;
  Status st = net::Socket::Connect(master, deadline, &socket);
  if (!st.ok()) {
    return Status(StatusCode::kUnavailable,
                  "cannot reach the master at " + master.ToString() + ": " + st.message());
  }
  if (auth.enabled()) {
    proto::Greeting greeting;
    greeting.purpose = static_cast<uint16_t>(proto::Kind::kHello);
    st = auth::DialHandshake(socket, auth, greeting, "", deadline);
    if (!st.ok()) {
      const StatusCode code =
          st.code() == StatusCode::kUnauthenticated ? st.code() : StatusCode::kUnavailable;
      return Status(code, "the master " + st.message());
    }
  }
  *out = std::move(socket);
  return Status::Ok();
}

Status MasterClient::Connect(const net::Endpoint& master, const auth::RunAuth& auth,
                             Deadline deadline) {
  PCCL_RETURN_IF_ERROR(Dial(master, auth, deadline, &socket_));
  std::lock_guard<std::mutex> life(life_mu_);
  reader_ = std::thread([this] { ReaderLoop(); });
  return Status::Ok();
}

Status MasterClient::Reconnect(const net::Endpoint& master, const auth::RunAuth& auth,
                               Deadline deadline) {
  net::Socket fresh;
  PCCL_RETURN_IF_ERROR(Dial(master, auth, deadline, &fresh));
  std::lock_guard<std::mutex> life(life_mu_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return Status(StatusCode::kUnavailable, "communicator closed");
  }
  // The old reader ends once woken (if the connection was not lost yet, that loses it),
  // and the heartbeat thread once the connection is lost.
  socket_.ShutdownRead();
  if (reader_.joinable()) reader_.join();
  if (heartbeat_.joinable()) heartbeat_.join();
  VerdictCallbacks orphans(CallMemory());
  {
    std::lock_guard<std::mutex> send(send_mu_);
    stale_ = std::move(socket_);
    socket_ = std::move(fresh);
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox_.clear();
    verdicts_.clear();
    verdict_order_.clear();
    reachability_.reset();
    kicked_ = Status::Ok();
    lost_ = Status::Ok();
    welcomed_ = false;
    ++generation_;
    beat_outstanding_ = false;
    last_heard_ = Clock::now();
    heard_rto_ = Duration(0);
    WakeAllLocked();  // waits begun on the old connection end (generation_)
    orphans = TakeVerdictCallbacksLocked(nullptr);  // their verdicts went with it
  }
  for (auto& then : orphans) then(Replaced(), proto::Verdict());
  reader_ = std::thread([this] { ReaderLoop(); });
  return Status::Ok();
}

void MasterClient::MarkWelcomed() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    welcomed_ = true;
  }
  std::lock_guard<std::mutex> send(send_mu_);
  stale_.Close();
}

void MasterClient::SetResumable(bool resumable) {
  std::lock_guard<std::mutex> lock(mu_);
  resumable_ = resumable;
}

Status MasterClient::Send(proto::Kind kind, const std::string& payload, Deadline deadline) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lost_.ok()) return lost_;
    if (!welcomed_ && kind != proto::Kind::kHello) {
      return Status(StatusCode::kUnavailable,
                    "master unavailable: reconnecting, this peer is not welcomed yet");
    }
  }
  std::lock_guard<std::mutex> lock(send_mu_);
  Status st = net::SendFrame(socket_, static_cast<uint16_t>(kind), payload, deadline);
  if (!st.ok()) {
    // The master may have dropped this peer on purpose (Error{Kicked} before the close):
    // give the reader a moment to read that, so the caller learns the real cause.
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kLostGrace, [&] { return !lost_.ok(); });
    if (lost_.code() == StatusCode::kKicked) return lost_;
    return Status(StatusCode::kUnavailable, "master unavailable: " + st.message());
  }
  return st;
}

void MasterClient::ReaderLoop() {
  NameThisThread("pccl-master-rx");
  // Kept from frame to frame, with their room: a verdict per collective allocates nothing.
  std::string payload;
  proto::Verdict verdict;
  while (true) {
    net::FrameHeader header;
    Status st = net::RecvFrame(socket_, net::kMaxMasterMessage, Deadline::Never(), &header,
                               &payload);
    std::unique_lock<std::mutex> lock(mu_);
    last_heard_ = Clock::now();
    if (st.ok()) heard_rto_ = socket_.RetransmitTimeout();
    if (!st.ok()) {
      if (lost_.ok()) {
        lost_ = !kicked_.ok() ? kicked_
                : closing_    ? Status(StatusCode::kUnavailable, "communicator closed")
                              : Status(StatusCode::kUnavailable, "master unavailable: " + st.message());
      }
      WakeAllLocked();
      VerdictCallbacks orphans = TakeVerdictCallbacksLocked(nullptr);
      const Status lost = lost_;
      auto listener = listener_;
      // A loss this peer will recover from fails the running collectives as a torn-down
      // operation: their retry runs once the run resumed.
      const bool resuming = resumable_ && lost_.code() == StatusCode::kUnavailable && !closing_;
      proto::Verdict lost_verdict;
      lost_verdict.ok = 0;
      lost_verdict.code =
          static_cast<uint32_t>(resuming ? StatusCode::kAborted : lost_.code());
      lost_verdict.reason =
          lost_.message() + (resuming ? "; reconnecting to resume the run: retry" : "");
      lock.unlock();
      if (listener) {  // fail running collectives: nobody will hand out their verdicts now
        lost_verdict.key.epoch = UINT64_MAX;  // matches no real operation: means "all"
        listener(lost_verdict);
      }
      for (auto& then : orphans) then(lost, proto::Verdict());
      return;
    }
    auto kind = static_cast<proto::Kind>(header.kind);
    if (kind == proto::Kind::kHeartbeatAck) {  // its arrival (last_heard_), and the round trip
      if (beat_outstanding_) {
        beat_rtt_ = last_heard_ - beat_sent_;
        beat_outstanding_ = false;
      }
      continue;
    }
    if (kind == proto::Kind::kReachability) {
      proto::Reachability answer;
      if (proto::Decode(payload, &answer).ok()) {
        reachability_ = answer;
        cv_.notify_all();
        auto listener = reachability_listener_;
        lock.unlock();
        if (listener) listener(answer);
        lock.lock();
      }
      continue;
    }
    if (kind == proto::Kind::kPairQuery) {
      proto::PairQuery query;
      st = proto::Decode(payload, &query);
      if (!st.ok()) {
        PCCL_LOG(kWarning, "bad pair query from the master: " + st.ToString());
        continue;
      }
      auto listener = pair_query_listener_;
      lock.unlock();
      if (listener) listener(query);
      lock.lock();
      continue;
    }
    if (kind == proto::Kind::kVerdict) {
      st = proto::Decode(payload, &verdict);
      if (!st.ok()) {
        PCCL_LOG(kWarning, "bad verdict from the master: " + st.ToString());
        continue;
      }
      // The listener runs before the verdict is stored: once a caller can see it, the
      // listener has acted on it (failed the operation, set aside a ring being replaced).
      auto listener = listener_;
      lock.unlock();
      if (listener) listener(verdict);
      lock.lock();
      // To the caller waiting for it, or kept until one asks (OnVerdict, TakeVerdict).
      VerdictCallbacks callers = TakeVerdictCallbacksLocked(&verdict.key);
      if (callers.empty() && verdicts_.emplace(verdict.key, verdict).second) {
        verdict_order_.push_back(verdict.key);
        if (verdict_order_.size() > kVerdictMemory) {
          verdicts_.erase(verdict_order_.front());
          verdict_order_.pop_front();
        }
      }
      lock.unlock();
      for (auto& then : callers) then(Status::Ok(), verdict);
      continue;
    }
    if (kind == proto::Kind::kError) {
      proto::ErrorMessage error;
      if (proto::Decode(payload, &error).ok() &&
          error.code == static_cast<uint32_t>(StatusCode::kKicked)) {
        kicked_ = Status(StatusCode::kKicked, "master: " + error.message);
      }
    }
    proto::Topology topology;
    if (kind == proto::Kind::kTopology && proto::Decode(payload, &topology).ok()) {
      // The listener runs before the topology is queued: once a caller can see the
      // message, the listener has seen it too.
      auto listener = topology_listener_;
      lock.unlock();
      if (listener) listener(topology);
      lock.lock();
    }
    inbox_.push_back(Message{kind, std::move(payload), ++arrivals_});
    cv_.notify_all();
  }
}

void MasterClient::HeartbeatLoop(Duration interval) {
  NameThisThread("pccl-heartbeat");
  // The master answers every beat and kicks a peer silent for 4 intervals; the same
  // silence from the master (stopped, partitioned, its host gone) makes this peer give it
  // up: every waiting call fails with Unavailable instead of waiting for its deadline.
  // On a path slower than loopback the limit grows with the connection's retransmission
  // timeout, as the master's allowance for this peer does (master/admission.h). The RTO
  // is the one measured when the master was last heard: during an outage it only tells
  // how long the outage has lasted.
  constexpr Duration kRtoFloor = std::chrono::milliseconds(200);
  std::unique_lock<std::mutex> lock(mu_);
  last_heard_ = Clock::now();
  TimePoint last_wake = Clock::now();
  while (!closing_ && lost_.ok()) {
    if (cv_.wait_for(lock, interval, [&] { return closing_ || !lost_.ok(); })) return;
    const TimePoint woke = Clock::now();
    if (woke - last_wake > interval * 2) {
      // This process was stopped or starved, not the master silent: what the master sent
      // meanwhile waits unread in the socket. Count silence from now on.
      last_heard_ = woke;
    }
    last_wake = woke;
    const Duration rto = heard_rto_;
    const Duration silence_limit = interval * 4 + 15 * (rto > kRtoFloor ? rto - kRtoFloor
                                                                        : Duration(0));
    const Duration silent = Clock::now() - last_heard_;
    if (silent > silence_limit) {
      lost_ = Status(StatusCode::kUnavailable,
                     "master unavailable: nothing heard from it for " +
                         std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(silent).count()) +
                         " ms (its heartbeat timeout is " +
                         std::to_string(
                             std::chrono::duration_cast<std::chrono::milliseconds>(silence_limit).count()) +
                         " ms): stopped, partitioned or overloaded");
      WakeAllLocked();
      lock.unlock();
      // The reader wakes, fails the running collectives and exits. No FIN: a master that is
      // only stopped must not see this peer leave before its new connection resumes it.
      socket_.ShutdownRead();
      return;
    }
    proto::Heartbeat beat{static_cast<uint32_t>(std::min<int64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(beat_rtt_).count(), UINT32_MAX))};
    if (!beat_outstanding_) {
      beat_outstanding_ = true;
      beat_sent_ = Clock::now();
    }
    lock.unlock();
    Status st = Send(proto::Kind::kHeartbeat, proto::Encode(beat), Deadline::In(interval * 4));
    lock.lock();
    if (!st.ok()) return;
  }
}

void MasterClient::StartHeartbeats(Duration interval) {
  if (heartbeat_.joinable()) return;
  heartbeat_ = std::thread([this, interval] { HeartbeatLoop(interval); });
}

void MasterClient::SetReachabilityListener(
    std::function<void(const proto::Reachability&)> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  reachability_listener_ = std::move(listener);
}

void MasterClient::SetPairQueryListener(std::function<void(const proto::PairQuery&)> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  pair_query_listener_ = std::move(listener);
}

void MasterClient::SetTopologyListener(std::function<void(const proto::Topology&)> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  topology_listener_ = std::move(listener);
}

Status MasterClient::Wait(const std::vector<proto::Kind>& kinds, Deadline deadline,
                          proto::Kind* kind, std::string* payload, uint64_t* arrival) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t generation = generation_;
  while (true) {
    if (generation_ != generation) return Replaced();
    for (auto it = inbox_.begin(); it != inbox_.end(); ++it) {
      if (it->kind == proto::Kind::kError ||
          std::find(kinds.begin(), kinds.end(), it->kind) != kinds.end()) {
        *kind = it->kind;
        *payload = std::move(it->payload);
        if (arrival != nullptr) *arrival = it->arrival;
        inbox_.erase(it);
        return Status::Ok();
      }
    }
    if (!lost_.ok()) return lost_;
    if (deadline.never()) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout) {
      // One last look happens at the top of the loop only if something arrived.
      bool found = std::any_of(inbox_.begin(), inbox_.end(), [&](const auto& m) {
        return m.kind == proto::Kind::kError ||
               std::find(kinds.begin(), kinds.end(), m.kind) != kinds.end();
      });
      if (!found) {
        return Status(StatusCode::kDeadlineExceeded, "no answer from the master in time");
      }
    }
  }
}

bool MasterClient::Has(proto::Kind kind) {
  std::lock_guard<std::mutex> lock(mu_);
  return std::any_of(inbox_.begin(), inbox_.end(), [&](const auto& m) { return m.kind == kind; });
}

bool MasterClient::HasBefore(proto::Kind kind, uint64_t arrival) {
  std::lock_guard<std::mutex> lock(mu_);
  return std::any_of(inbox_.begin(), inbox_.end(),
                     [&](const auto& m) { return m.kind == kind && m.arrival < arrival; });
}

Status MasterClient::WaitUntilHas(proto::Kind kind, Deadline deadline,
                                  const std::function<bool()>& also) {
  std::unique_lock<std::mutex> lock(mu_);
  auto queued = [&] {
    return (also && also()) || std::any_of(inbox_.begin(), inbox_.end(),
                                           [&](const auto& m) { return m.kind == kind; });
  };
  while (!queued()) {
    if (!lost_.ok()) return lost_;
    if (deadline.never()) {
      cv_.wait(lock);
    } else if (cv_.wait_until(lock, deadline.when()) == std::cv_status::timeout && !queued()) {
      return Status(StatusCode::kDeadlineExceeded,
                    std::string("no ") + proto::KindName(static_cast<uint16_t>(kind)) +
                        " from the master in time");
    }
  }
  return Status::Ok();
}

void MasterClient::Wake() {
  std::lock_guard<std::mutex> lock(mu_);
  cv_.notify_all();
}

void MasterClient::SetVerdictListener(std::function<void(const proto::Verdict&)> listener) {
  std::lock_guard<std::mutex> lock(mu_);
  listener_ = std::move(listener);
}

bool MasterClient::TakeVerdict(const proto::OpKey& key, proto::Verdict* out) {
  std::lock_guard<std::mutex> lock(mu_);
  return TakeVerdictLocked(key, out);
}

bool MasterClient::PeekVerdict(const proto::OpKey& key, proto::Verdict* out) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = verdicts_.find(key);
  if (it == verdicts_.end()) return false;
  *out = it->second;
  return true;
}

bool MasterClient::TakeVerdictLocked(const proto::OpKey& key, proto::Verdict* out) {
  auto it = verdicts_.find(key);
  if (it == verdicts_.end()) return false;
  *out = std::move(it->second);
  verdicts_.erase(it);
  verdict_order_.erase(std::find(verdict_order_.begin(), verdict_order_.end(), key));
  return true;
}

void MasterClient::OnVerdict(const proto::OpKey& key, VerdictCallback then) {
  std::unique_lock<std::mutex> lock(mu_);
  proto::Verdict verdict;
  if (TakeVerdictLocked(key, &verdict)) {
    lock.unlock();
    then(Status::Ok(), verdict);
  } else if (!lost_.ok()) {
    const Status lost = lost_;
    lock.unlock();
    then(lost, proto::Verdict());
  } else {
    verdict_waits_.emplace(key, std::move(then));
  }
}

MasterClient::VerdictCallbacks MasterClient::TakeVerdictCallbacksLocked(
    const proto::OpKey* key) {
  VerdictCallbacks taken(CallMemory());
  auto first = key ? verdict_waits_.lower_bound(*key) : verdict_waits_.begin();
  auto last = key ? verdict_waits_.upper_bound(*key) : verdict_waits_.end();
  for (auto it = first; it != last; ++it) taken.push_back(std::move(it->second));
  verdict_waits_.erase(first, last);
  return taken;
}

void MasterClient::AbandonVerdict(const proto::OpKey& key, const Status& why) {
  VerdictCallbacks callers(CallMemory());
  {
    std::lock_guard<std::mutex> lock(mu_);
    callers = TakeVerdictCallbacksLocked(&key);
  }
  for (auto& then : callers) then(why, proto::Verdict());
}

Status MasterClient::WaitVerdict(const proto::OpKey& key, proto::Verdict* out,
                                 const std::function<Status()>& report) {
  // Shared with the callback: the thread that calls it wakes this one after releasing
  // the mutex (so that this one does not wake only to wait for it), possibly after this
  // one has returned. From CallMemory; the callback holds a pointer (kept inline by its
  // std::function) and takes the answer's reference to itself when it runs, once.
  struct Answer {
    std::mutex mu;
    std::condition_variable cv;
    bool given = false;
    Status status;
    proto::Verdict* out = nullptr;  // written before `given`, while the caller waits
    std::shared_ptr<Answer> keep;   // itself, until the callback runs
  };
  auto answer = MakeSharedInCallMemory<Answer>();
  answer->out = out;
  answer->keep = answer;
  OnVerdict(key, [raw = answer.get()](const Status& status, const proto::Verdict& verdict) {
    const std::shared_ptr<Answer> answer = std::move(raw->keep);
    {
      std::lock_guard<std::mutex> lock(answer->mu);
      answer->status = status;
      *answer->out = verdict;
      answer->given = true;
    }
    answer->cv.notify_one();
  });
  if (report) {
    const Status sent = report();
    if (!sent.ok()) AbandonVerdict(key, sent);
  }
  std::unique_lock<std::mutex> lock(answer->mu);
  answer->cv.wait(lock, [&] { return answer->given; });
  return answer->status;
}

Status MasterClient::lost() {
  std::lock_guard<std::mutex> lock(mu_);
  return lost_;
}

void MasterClient::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    WakeAllLocked();
  }
  std::lock_guard<std::mutex> life(life_mu_);
  if (heartbeat_.joinable()) heartbeat_.join();
  socket_.Shutdown();
  if (reader_.joinable()) reader_.join();
  socket_.Close();
  stale_.Close();
  // The reader, if one ran, called every verdict callback as it ended; any left (none ran)
  // and any registered from now on hear that the connection is closed.
  VerdictCallbacks orphans(CallMemory());
  Status lost;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (lost_.ok()) lost_ = Status(StatusCode::kUnavailable, "communicator closed");
    lost = lost_;
    orphans = TakeVerdictCallbacksLocked(nullptr);
  }
  for (auto& then : orphans) then(lost, proto::Verdict());
}

}  // namespace pccl::comm
