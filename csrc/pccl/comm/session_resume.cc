// Session: resuming the run after the master was lost.
//
// The story. The master is one process, and it may die, be restarted or stall (a stopped
// process, a starved host, a partition). A peer notices at once when the connection breaks
// (end of stream, reset) and within the heartbeat timeout when the master falls silent
// (master_client.cc). Then:
//
// 1. What ran fails. No verdict will come for the collectives in flight, on any peer, so
//    every peer fails them as torn down (Aborted: retry, input intact). Control calls in
//    flight fail too, but AcrossResume runs them again once the run resumed.
// 2. The topology watcher reconnects to the same address, with backoff (50 ms doubling to
//    250 ms: a refused connection costs nothing, and a restarted master waits for the
//    last of the peers), for up to PCCL_MASTER_RESUME_S. A stopped master's kernel still
//    accepts the connection: the attempt then waits for the Welcome as long as the window
//    lasts. The old connection stays open and unread until the Welcome, so that a master
//    that was only stopped sees no departure when it wakes, but finds this peer's new
//    connection.
// 3. The Hello says what this peer knows: its id, the last epoch it applied, its group's
//    ring with the bandwidths it measured, and its last shared-state revision. The master
//    takes it back (master/admission.cc, "Resuming"): into its place at once if it still
//    knew the peer (an epoch that re-dials the group), with the other resumers if it
//    restarted (the ring order they had, in an epoch above any they knew), or as a joiner
//    if it forgot it.
// 4. This peer applies that Topology (new ring links, sequence numbers from 0), asks the
//    master to dial it back again, and the calls waiting in AwaitMaster go on. The first
//    collective after it is the retry of the one that failed, on every peer alike.
//
// Calls made while a resume runs wait for it (AwaitMaster) until their deadline. If the
// window passes, the run is over for this peer: every call fails with Unavailable, as
// when resuming is off (PCCL_MASTER_RESUME_S=0). A kick is final.
//
// What a resume cannot repair: a master that dies after sending a verdict to some members
// but not to others leaves them disagreeing on that one collective (the others retry it).
#include <algorithm>
#include <string>

#include "pccl/comm/session.h"
#include "pccl/common/logging.h"
#include "pccl/common/params.h"

namespace pccl::comm {
namespace {

using proto::Kind;

constexpr Duration kFirstBackoff = std::chrono::milliseconds(50);
constexpr Duration kMaxBackoff = std::chrono::milliseconds(250);
// How often a call waiting for a resume looks whether the master connection is back.
constexpr Duration kResumeRelook = std::chrono::milliseconds(50);
// Deadline for handing the reachability query to the new master's socket.
constexpr auto kQueryTimeout = std::chrono::seconds(5);

}  // namespace

bool Session::Resumable(const Status& lost) const {
  return lost.code() == StatusCode::kUnavailable && GetParams().master_resume_s > 0 &&
         !closed_.load();
}

bool Session::MasterGoneForGood() {
  const Status lost = master_.lost();
  return !lost.ok() && !Resumable(lost);
}

Status Session::NoVerdict(const Status& st) const {
  if (st.ok() || !Resumable(st)) return st;
  // No verdict will come for it, on any peer: every peer fails it, and retries it once
  // the run resumed (input intact).
  return Status(StatusCode::kAborted, st.message() + "; reconnecting to resume the run: retry");
}

Status Session::AwaitMaster(Deadline deadline, const char* caller) {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    if (closed_.load()) return FailedPrecondition("communicator is closed");
    if (!resume_failed_.ok()) return resume_failed_;
    Status lost = master_.lost();
    if (lost.ok() && !resuming_) return Status::Ok();
    if (!lost.ok() && !Resumable(lost)) return lost;
    if (deadline.expired()) {
      return Status(StatusCode::kDeadlineExceeded,
                    std::string(caller) +
                        " timed out waiting for the run to resume after the master was lost");
    }
    master_cv_.wait_until(lock, deadline.Min(Deadline::In(kResumeRelook)).when());
  }
}

Status Session::AcrossResume(Deadline deadline, const char* caller,
                             const std::function<Status()>& call) {
  while (true) {
    PCCL_RETURN_IF_ERROR(AwaitMaster(deadline, caller));
    const uint64_t resumes = resumes_.load();
    Status st = call();
    if (st.ok() || closed_.load()) return st;
    Status lost = master_.lost();
    if (resumes_.load() == resumes && (lost.ok() || !Resumable(lost))) return st;
    PCCL_LOG(kInfo, std::string(caller) + " was cut off by the lost master (" + st.message() +
                        "); it runs again once the run resumed");
  }
}

void Session::AdoptWelcome(const proto::Welcome& welcome) {
  if (welcome.relay_port != 0) {
    const std::string& host =
        welcome.relay_host.empty() ? master_endpoint_.host : welcome.relay_host;
    routes_.SetRelay({{host, welcome.relay_port}, welcome.peer_id, welcome.relay_ticket});
  }
  master_.MarkWelcomed();
  if (welcome.heartbeat_interval_ms > 0) {
    master_.StartHeartbeats(Milliseconds(welcome.heartbeat_interval_ms));
  }
}

proto::Hello Session::MakeHello(bool resume) {
  proto::Hello hello;
  hello.peer_group = options_.peer_group;
  hello.p2p_port = listener_.port();
  hello.advertise_host = options_.advertise_host;
  hello.public_key = credentials_.public_key();
  if (!resume) return hello;
  hello.resume_peer_id = peer_id_.load();
  std::lock_guard<std::mutex> lock(mu_);
  hello.resume_epoch = topology_.epoch;
  hello.resume_ring_epoch = ring_epoch_;
  for (const proto::Member& m : topology_.members) {
    if (m.peer_group != options_.peer_group) continue;
    auto rate = measured_rates_.find(m.peer_id);
    hello.resume_ring.push_back(
        proto::BandwidthSample{m.peer_id, rate == measured_rates_.end() ? 0 : rate->second});
  }
  hello.resume_state_revision = state_revision_plus_one_;
  return hello;
}

Status Session::ResumeOnce(Deadline deadline) {
  PCCL_RETURN_IF_ERROR(master_.Reconnect(
      master_endpoint_, credentials_.run(),
      deadline.Min(Deadline::In(Milliseconds(GetParams().connect_timeout_ms)))));
  PCCL_RETURN_IF_ERROR(master_.Send(Kind::kHello, proto::Encode(MakeHello(true)), deadline));
  Kind kind;
  std::string payload;
  PCCL_RETURN_IF_ERROR(master_.Wait({Kind::kWelcome}, deadline, &kind, &payload));
  if (kind == Kind::kError) return ErrorFromMaster(payload);
  proto::Welcome welcome;
  PCCL_RETURN_IF_ERROR(proto::Decode(payload, &welcome));
  if (welcome.peer_id != peer_id_.load()) {
    return Internal("the master welcomed this peer back as peer " +
                    std::to_string(welcome.peer_id) + ", not as peer " +
                    std::to_string(peer_id_.load()));
  }
  AdoptWelcome(welcome);
  return Status::Ok();
}

Status Session::Resume(const Status& why) {
  resumes_.fetch_add(1);
  {
    std::lock_guard<std::mutex> lock(mu_);
    resuming_ = true;
  }
  auto finish = [this](Status outcome) {
    std::lock_guard<std::mutex> lock(mu_);
    resuming_ = false;
    if (!outcome.ok()) resume_failed_ = outcome;
    master_cv_.notify_all();
    return outcome;
  };
  const int64_t window_s = GetParams().master_resume_s;
  PCCL_LOG(kWarning, "lost the master (" + why.message() + "); reconnecting to " +
                         master_endpoint_.ToString() + " for up to " +
                         std::to_string(window_s) + " s to resume the run");
  while (true) {
    const Deadline deadline = Deadline::In(std::chrono::seconds(window_s));
    Duration backoff = kFirstBackoff;
    Status st;
    while (!closed_.load()) {
      st = ResumeOnce(deadline);
      if (st.ok()) break;
      const bool again = st.code() == StatusCode::kUnavailable ||
                         st.code() == StatusCode::kDeadlineExceeded;
      if (!again || deadline.expired()) break;
      std::unique_lock<std::mutex> lock(mu_);
      master_cv_.wait_for(lock, backoff, [this] { return closed_.load(); });
      backoff = std::min(backoff * 2, kMaxBackoff);
    }
    if (closed_.load()) return finish(FailedPrecondition("communicator is closed"));
    if (!st.ok()) {
      const StatusCode code =
          st.code() == StatusCode::kDeadlineExceeded ? StatusCode::kUnavailable : st.code();
      Status gone(code, "master unavailable: the run could not be resumed within " +
                            std::to_string(window_s) + " s of losing the master (" +
                            why.message() + "): " + st.message());
      PCCL_LOG(kError, gone.ToString());
      return finish(gone);
    }
    // Welcomed back: the master sends the Topology that takes this peer back into a ring
    // (at once, or when the members vote if it forgot this peer).
    std::unique_lock<std::timed_mutex> control(control_mu_);
    if (closed_.load()) return finish(FailedPrecondition("communicator is closed"));
    st = WaitAdmissionLocked(Deadline::Never());
    if (st.ok()) {
      (void)master_.Send(Kind::kReachabilityQuery, "", Deadline::In(kQueryTimeout));
      PCCL_LOG(kInfo, "resumed the run with the master at " + master_endpoint_.ToString());
      return finish(Status::Ok());
    }
    Status lost = master_.lost();
    if (!lost.ok() && Resumable(lost)) continue;  // lost again before it was back
    if (closed_.load()) return finish(FailedPrecondition("communicator is closed"));
    if (!lost.ok()) return finish(lost);
    // Still connected, but its ring could not be built (a neighbour gone meanwhile): the
    // master replaces or drops it, and the next calls meet that.
    PCCL_LOG(kWarning, "resuming the run: " + st.ToString());
    return finish(Status::Ok());
  }
}

}  // namespace pccl::comm
