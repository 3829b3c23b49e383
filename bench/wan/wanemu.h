// wanemu: a packet-level WAN link emulator on a TUN device, for the pccl WAN lab.
//
// The lab (bench/wan/lab.py) builds a router network namespace with one veth per node
// (peer or master) and a TUN device; policy routing sends every packet that arrives from a
// veth into the TUN. This program runs inside the router namespace, attached to that TUN.
//
// The story of one packet:
//   1. The reader thread reads it from the TUN and classifies it by (source IP,
//      destination IP) into a link: one per ordered pair of nodes, each with its own
//      one-way delay, jitter, rate, loss and queue. Packets between unknown addresses go
//      straight back (no link, no shaping).
//   2. Loss: with probability `loss` the packet is dropped. (Before that, faults: a
//      blackholed link, or a TCP connection being reset, drops it; wanemu_faults.cc.)
//   3. Queue and rate: a link is a single server that serializes packets at `rate` bits/s.
//      `busy_until` is when the server finishes the bytes it already holds; the bytes
//      waiting for it (the backlog) are (busy_until - now) x rate. A packet that would push
//      the backlog over `queue_bytes` is dropped (drop-tail). Otherwise it finishes
//      serializing at max(now, busy_until) + size / rate, which becomes the new busy_until.
//   4. Propagation: it leaves the link one-way `delay` (plus uniform jitter in
//      [-jitter, +jitter], never earlier than the packet before it: no reordering) after it
//      finished serializing. It waits in the link's FIFO, ordered by departure time.
//   5. The writer thread sleeps until the earliest departure among all links, writes the
//      packet back into the TUN (unless the link is blackholed by then), and the router's
//      main table delivers it to the destination's veth.
//
// Threads: main (signals, stats), reader, writer, control. The link FIFOs are guarded by
// one mutex (mu_); the live link parameters and the TCP flow table by another (fault_mu_).
// Stats (JSON) are written to --stats PATH on SIGUSR1 and at exit (SIGTERM / SIGINT).
// wanemu.cc is the data path, wanemu_faults.cc the control channel and the faults.
//
// Config file (--config PATH), one directive per line, '#' comments:
//   tun NAME                  the TUN device to attach to (created by the lab, persistent)
//   node INDEX IPV4           a node and its address
//   link SRC DST DELAY_US JITTER_US RATE_BPS LOSS QUEUE_BYTES   (RATE_BPS 0: no cap)
//   seed N                    random seed for loss and jitter
//   memory_bytes N            cap on all bytes held (default 2 GiB); beyond it, drops
//
// Faults at run time (--control PATH): a UNIX stream socket; each command is one line and
// gets one line back, "ok ..." once the change is in effect, or "err REASON". SEL names
// directed links: "*" all, "A" all from or to node A, "A-B" both directions, "A>B" one
// (nodes by index); "ok N" says how many directed links a command changed.
//   ping
//   blackhole SEL [SECONDS]    drop their packets silently, also those already on the
//                              link; with SECONDS > 0, heal after that long
//   heal SEL                   end a blackhole or a flap
//   flap SEL DOWN UP DURATION  blackhole DOWN s, heal UP s, ...; healed after DURATION s
//   set SEL KEY=VALUE... [for=SECONDS]   delay_us jitter_us rate_bps loss queue_bytes, for
//                              packets that arrive from now on; with for=SECONDS the
//                              values they replaced come back after that long
//   restore [SEL]              configured parameters back, blackholes off (default: all)
//   reset SEL                  reset every TCP connection on them: a RST to each end, so
//                              both sockets fail with ECONNRESET ("ok FLOWS")
//   show SEL                   "ok SRC>DST delay_us=... blackhole=0; ..."
// Timed changes run on the emulator's clock, in the control thread. A later command on a
// link cancels the timed changes pending on it of the same kind (blackhole, parameters).

#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace wanemu {

using Clock = std::chrono::steady_clock;
using Nanos = std::chrono::nanoseconds;

constexpr size_t kMaxPacket = 65536 + 64;

[[noreturn]] void Die(const std::string& what);

struct Packet {
  Clock::time_point departure;
  std::vector<uint8_t> bytes;
};

struct LinkParams {
  int64_t delay_us = 0;
  int64_t jitter_us = 0;
  double rate_bps = 0;  // 0: unlimited
  double loss = 0;
  int64_t queue_bytes = 0;
};

struct LinkStats {
  std::atomic<uint64_t> rx_packets{0}, rx_bytes{0}, tx_packets{0}, tx_bytes{0};
  std::atomic<uint64_t> drop_loss{0}, drop_queue{0}, drop_memory{0}, drop_fault{0};
  std::atomic<int64_t> max_backlog_bytes{0};
};

// One direction between two nodes. Reader-side state (busy_until, last_departure) is
// touched only by the reader thread; `fifo` is guarded by Emulator::mu_, `params` (the
// live parameters) by Emulator::fault_mu_; the generations belong to the control thread.
struct Link {
  int src = -1, dst = -1;
  LinkParams params, configured;
  std::atomic<bool> blackhole{false};
  uint64_t blackhole_gen = 0, params_gen = 0;  // bumped by each change: stale timers skip
  Clock::time_point busy_until{};
  Clock::time_point last_departure{};
  std::deque<Packet> fifo;
  LinkStats stats;
};

// One direction of a TCP connection, by its sender's view (src:sport -> dst:dport), all in
// network byte order as in the packet.
struct FlowKey {
  uint32_t src = 0, dst = 0;
  uint16_t sport = 0, dport = 0;
  bool operator==(const FlowKey&) const = default;
  FlowKey Reverse() const { return {dst, src, dport, sport}; }
};

struct FlowKeyHash {
  size_t operator()(const FlowKey& k) const {
    uint64_t a = (uint64_t(k.src) << 32) | k.dst, b = (uint64_t(k.sport) << 16) | k.dport;
    return std::hash<uint64_t>()(a * 0x9e3779b97f4a7c15ULL ^ b);
  }
};

struct Flow {
  uint32_t ack;  // the sender's rcv_nxt when it sent its latest segment
  Clock::time_point seen;
};

// Which directed links a control command applies to (see above).
struct Selector {
  enum Kind { kAll, kNode, kPair, kOneWay } kind = kAll;
  int a = -1, b = -1;
  static bool Parse(const std::string& text, Selector* s);
  bool Matches(int src, int dst) const;
};

class Emulator {
 public:
  // The data path (wanemu.cc).
  void LoadConfig(const std::string& path);
  void AttachTun();
  void Start();
  void Stop();
  void WriteStats(const std::string& path, uint64_t seq);
  // The control channel (wanemu_faults.cc); before Start().
  void ListenControl(const std::string& path);

 private:
  Link* Classify(const uint8_t* p, size_t n);
  bool Admit(Link& link, const LinkParams& p, size_t size, Clock::time_point now,
             Clock::time_point* departure);
  void ReadLoop();
  Link* EarliestLocked();
  void WriteLoop();

  // Faults (wanemu_faults.cc).
  enum TimedKind { kBlackholeOn, kBlackholeOff, kParams };
  struct Timed {
    Link* link;
    TimedKind kind;
    uint64_t gen;
    LinkParams values{};
    unsigned mask = 0;
  };
  static constexpr size_t kMaxFlows = 4096;  // beyond it, flows idle for 30 s are forgotten

  bool Shape(Link& link, const std::vector<uint8_t>& buf, Clock::time_point now,
             Clock::time_point* departure);
  bool TrackLocked(const uint8_t* p, size_t n, Clock::time_point now,
                   std::vector<uint8_t>* rst);
  void Inject(const std::vector<uint8_t>& packet);
  int NodeOf(uint32_t ip) const;
  size_t Reset(const Selector& sel);
  void RunTimers(Clock::time_point now);
  uint64_t SetBlackhole(Link* link, bool on);
  std::string Show(const std::vector<Link*>& links);
  std::string SetParams(const std::vector<Link*>& links, const std::vector<std::string>& args,
                        Clock::time_point now);
  std::string Execute(const std::string& line);
  void ControlLoop();

  std::string tun_name_;
  int fd_ = -1;
  std::map<uint32_t, int> node_by_ip_;
  std::map<std::pair<int, int>, std::unique_ptr<Link>> links_;
  Link unshaped_;
  std::mt19937_64 rng_{12345};
  std::uniform_real_distribution<double> uniform_{0.0, 1.0};
  int64_t memory_cap_ = int64_t{2} << 30;
  std::atomic<uint64_t> held_bytes_{0};
  std::atomic<uint64_t> unknown_packets_{0}, write_errors_{0}, rst_injected_{0};
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  Clock::time_point next_wake_ = Clock::time_point::max();  // guarded by mu_
  std::thread reader_, writer_, control_;

  int control_fd_ = -1;
  std::string control_path_;
  std::multimap<Clock::time_point, Timed> timers_;  // control thread only
  std::mutex fault_mu_;
  std::unordered_map<FlowKey, Flow, FlowKeyHash> flows_;   // guarded by fault_mu_
  std::unordered_set<FlowKey, FlowKeyHash> resetting_;     // guarded by fault_mu_
  Clock::time_point last_sweep_{};                          // reader only
};

}  // namespace wanemu
