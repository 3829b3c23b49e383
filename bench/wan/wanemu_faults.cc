// wanemu's faults at run time: the control channel (a UNIX socket of one-line commands,
// listed in wanemu.h), blackholes and flaps, parameter changes, timers, and TCP resets.
//
// Resetting a connection from the middle of the network: the emulator remembers, for every
// TCP flow it forwards, the acknowledgement number of the sender's latest segment (its
// rcv_nxt when it sent it). To reset that sender it forges a RST from the other end with
// that number as sequence number. Linux accepts a RST whose sequence number is exactly
// rcv_nxt (the socket then fails with ECONNRESET); one inside the window but not exact
// draws a "challenge ACK" (RFC 5961) carrying the exact rcv_nxt, which the emulator
// answers with a second, exact RST. While a flow is being reset its packets are dropped,
// those already queued too, so rcv_nxt cannot move. Linux sends at most one challenge ACK
// per socket per 500 ms (net.ipv4.tcp_invalid_ratelimit); a socket that sent one just
// before may survive, which the lab's reset_link() then kills with `ss -K`.

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>

#include "wanemu.h"

namespace wanemu {
namespace {

struct Tcp {
  FlowKey key;
  uint32_t seq = 0, ack = 0;  // host byte order
  uint8_t flags = 0;
  static constexpr uint8_t kRst = 0x04, kAck = 0x10;
};

// Parses an IPv4 TCP packet's header (first fragments only); false for anything else.
bool ParseTcp(const uint8_t* p, size_t n, Tcp* t) {
  if (n < 20 || (p[0] >> 4) != 4 || p[9] != 6) return false;
  size_t ihl = size_t(p[0] & 0x0f) * 4;
  if ((((p[6] & 0x1f) << 8) | p[7]) != 0 || ihl < 20 || n < ihl + 20) return false;
  const uint8_t* h = p + ihl;
  std::memcpy(&t->key.src, p + 12, 4);
  std::memcpy(&t->key.dst, p + 16, 4);
  std::memcpy(&t->key.sport, h, 2);
  std::memcpy(&t->key.dport, h + 2, 2);
  uint32_t seq, ack;
  std::memcpy(&seq, h + 4, 4);
  std::memcpy(&ack, h + 8, 4);
  t->seq = ntohl(seq);
  t->ack = ntohl(ack);
  t->flags = h[13];
  return true;
}

uint32_t SumWords(const uint8_t* p, size_t n, uint32_t sum) {
  for (size_t i = 0; i + 1 < n; i += 2) sum += uint32_t(p[i] << 8 | p[i + 1]);
  if (n & 1) sum += uint32_t(p[n - 1] << 8);
  return sum;
}

uint16_t Checksum(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum & 0xffff));
}

// A bare RST to the sender of flow `to`, from the other end, with sequence number `seq`.
std::vector<uint8_t> BuildRst(const FlowKey& to, uint32_t seq) {
  std::vector<uint8_t> pkt(40, 0);
  uint8_t* ip = pkt.data();
  uint8_t* tcp = ip + 20;
  ip[0] = 0x45;
  ip[3] = 40;    // total length
  ip[6] = 0x40;  // don't fragment
  ip[8] = 64;    // TTL
  ip[9] = 6;     // TCP
  std::memcpy(ip + 12, &to.dst, 4);
  std::memcpy(ip + 16, &to.src, 4);
  uint16_t sum = Checksum(SumWords(ip, 20, 0));
  std::memcpy(ip + 10, &sum, 2);
  std::memcpy(tcp, &to.dport, 2);
  std::memcpy(tcp + 2, &to.sport, 2);
  uint32_t nseq = htonl(seq);
  std::memcpy(tcp + 4, &nseq, 4);
  tcp[12] = 5 << 4;  // header length
  tcp[13] = Tcp::kRst;
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, ip + 12, 8);
  pseudo[9] = 6;
  pseudo[11] = 20;
  sum = Checksum(SumWords(tcp, 20, SumWords(pseudo, 12, 0)));
  std::memcpy(tcp + 16, &sum, 2);
  return pkt;
}

// The parameters `set` takes, in the order of their bits in a mask.
constexpr const char* kParamNames[] = {"delay_us", "jitter_us", "rate_bps", "loss",
                                       "queue_bytes"};

bool SetParam(LinkParams* p, int index, double v) {
  if (!(v >= 0) || v > 1e15 || (index == 3 && v > 1)) return false;
  switch (index) {
    case 0: p->delay_us = int64_t(v); break;
    case 1: p->jitter_us = int64_t(v); break;
    case 2: p->rate_bps = v; break;
    case 3: p->loss = v; break;
    default: p->queue_bytes = int64_t(v); break;
  }
  return true;
}

void CopyParams(const LinkParams& from, unsigned mask, LinkParams* to) {
  if (mask & 1) to->delay_us = from.delay_us;
  if (mask & 2) to->jitter_us = from.jitter_us;
  if (mask & 4) to->rate_bps = from.rate_bps;
  if (mask & 8) to->loss = from.loss;
  if (mask & 16) to->queue_bytes = from.queue_bytes;
}

bool ParseNumber(const std::string& text, double* out) {
  char* end = nullptr;
  *out = std::strtod(text.c_str(), &end);
  return !text.empty() && *end == '\0' && std::isfinite(*out);
}

// Writes all of `text` to a blocking socket; false if the client went away.
bool WriteAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += size_t(n);
  }
  return true;
}

}  // namespace

bool Selector::Parse(const std::string& text, Selector* s) {
  if (text == "*") {
    s->kind = kAll;
    return true;
  }
  size_t cut = text.find_first_of("->");
  std::istringstream a(text.substr(0, cut));
  if (!(a >> s->a) || !a.eof() || s->a < 0) return false;
  if (cut == std::string::npos) {
    s->kind = kNode;
    return true;
  }
  s->kind = text[cut] == '-' ? kPair : kOneWay;
  std::istringstream b(text.substr(cut + 1));
  return (b >> s->b) && b.eof() && s->b >= 0 && s->b != s->a;
}

bool Selector::Matches(int src, int dst) const {
  switch (kind) {
    case kAll: return true;
    case kNode: return src == a || dst == a;
    case kPair: return (src == a && dst == b) || (src == b && dst == a);
    case kOneWay: return src == a && dst == b;
  }
  return false;
}

void Emulator::ListenControl(const std::string& path) {
  sockaddr_un addr{};
  if (path.size() >= sizeof(addr.sun_path)) Die("control socket path too long: " + path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  control_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  unlink(path.c_str());
  if (control_fd_ < 0 || bind(control_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) ||
      listen(control_fd_, 8)) {
    Die("control socket " + path + ": " + std::strerror(errno));
  }
  control_path_ = path;
}

// Faults first (a blackhole, a connection being reset), then Admit. Reader only.
bool Emulator::Shape(Link& link, const std::vector<uint8_t>& buf, Clock::time_point now,
                     Clock::time_point* departure) {
  LinkParams params;
  std::vector<uint8_t> rst;
  bool resetting;
  {
    std::lock_guard lock(fault_mu_);
    params = link.params;
    resetting = TrackLocked(buf.data(), buf.size(), now, &rst);
  }
  if (!rst.empty()) Inject(rst);
  if (resetting || link.blackhole.load()) {
    link.stats.drop_fault++;
    return false;
  }
  return Admit(link, params, buf.size(), now, departure);
}

// Remembers the ack number of a TCP sender's latest segment; true if its flow is being
// reset (the packet is dropped, and *rst is an exact RST for its sender). Needs fault_mu_.
bool Emulator::TrackLocked(const uint8_t* p, size_t n, Clock::time_point now,
                           std::vector<uint8_t>* rst) {
  Tcp t;
  if (!ParseTcp(p, n, &t)) return false;
  bool resetting = !resetting_.empty() && resetting_.count(t.key) > 0;
  if (t.flags & Tcp::kRst) {
    flows_.erase(t.key);
    flows_.erase(t.key.Reverse());
    return resetting;
  }
  if (resetting) {
    if (t.flags & Tcp::kAck) *rst = BuildRst(t.key, t.ack);
    return true;
  }
  if (!(t.flags & Tcp::kAck)) return false;  // a SYN: no connection to reset yet
  if (flows_.size() >= kMaxFlows && now - last_sweep_ > std::chrono::seconds(1)) {
    last_sweep_ = now;
    for (auto it = flows_.begin(); it != flows_.end();) {
      it = now - it->second.seen > std::chrono::seconds(30) ? flows_.erase(it) : std::next(it);
    }
  }
  flows_[t.key] = Flow{t.ack, now};
  return false;
}

void Emulator::Inject(const std::vector<uint8_t>& packet) {
  if (write(fd_, packet.data(), packet.size()) == static_cast<ssize_t>(packet.size())) {
    rst_injected_++;
  } else {
    write_errors_++;
  }
}

int Emulator::NodeOf(uint32_t ip) const {
  auto it = node_by_ip_.find(ip);
  return it == node_by_ip_.end() ? -1 : it->second;
}

// Resets every tracked TCP connection on the selected links: RSTs to both ends, then a
// short wait in which challenge ACKs get their exact RST. Returns the flows reset.
size_t Emulator::Reset(const Selector& sel) {
  std::unordered_set<FlowKey, FlowKeyHash> keys;
  std::vector<std::vector<uint8_t>> rsts;
  {
    std::lock_guard lock(fault_mu_);
    for (const auto& [key, flow] : flows_) {
      if (!sel.Matches(NodeOf(key.src), NodeOf(key.dst))) continue;
      keys.insert(key);
      resetting_.insert(key);
      rsts.push_back(BuildRst(key, flow.ack));
    }
  }
  {
    std::lock_guard lock(mu_);  // their packets still queued would move rcv_nxt
    for (auto& [pair, link] : links_) {
      if (!sel.Matches(pair.first, pair.second)) continue;
      std::deque<Packet> keep;
      for (Packet& packet : link->fifo) {
        Tcp t;
        if (ParseTcp(packet.bytes.data(), packet.bytes.size(), &t) && keys.count(t.key)) {
          held_bytes_ -= packet.bytes.size();
          link->stats.drop_fault++;
        } else {
          keep.push_back(std::move(packet));
        }
      }
      link->fifo.swap(keep);
    }
  }
  for (const auto& rst : rsts) Inject(rst);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::lock_guard lock(fault_mu_);
  for (const FlowKey& key : keys) {
    resetting_.erase(key);
    flows_.erase(key);
  }
  return keys.size();
}

void Emulator::RunTimers(Clock::time_point now) {
  while (!timers_.empty() && timers_.begin()->first <= now) {
    Timed t = timers_.begin()->second;
    timers_.erase(timers_.begin());
    if (t.kind != kParams && t.gen == t.link->blackhole_gen) {
      t.link->blackhole.store(t.kind == kBlackholeOn);
    } else if (t.kind == kParams && t.gen == t.link->params_gen) {
      std::lock_guard lock(fault_mu_);
      CopyParams(t.values, t.mask, &t.link->params);
    }
  }
}

uint64_t Emulator::SetBlackhole(Link* link, bool on) {
  link->blackhole.store(on);
  return ++link->blackhole_gen;
}

std::string Emulator::Show(const std::vector<Link*>& links) {
  std::lock_guard lock(fault_mu_);
  std::ostringstream out;
  out << "ok";
  for (const Link* l : links) {
    const LinkParams& p = l->params;
    out << (l == links.front() ? " " : "; ") << l->src << ">" << l->dst
        << " delay_us=" << p.delay_us << " jitter_us=" << p.jitter_us
        << " rate_bps=" << p.rate_bps << " loss=" << p.loss << " queue_bytes=" << p.queue_bytes
        << " blackhole=" << int(l->blackhole.load());
  }
  return out.str();
}

std::string Emulator::SetParams(const std::vector<Link*>& links,
                                const std::vector<std::string>& args, Clock::time_point now) {
  LinkParams values;
  unsigned mask = 0;
  double seconds = 0;
  for (const std::string& arg : args) {
    size_t eq = arg.find('=');
    std::string key = arg.substr(0, eq);
    double v;
    if (eq == std::string::npos || !ParseNumber(arg.substr(eq + 1), &v)) {
      return "err bad KEY=VALUE '" + arg + "'";
    }
    int index = -1;
    for (int i = 0; i < 5; ++i) index = key == kParamNames[i] ? i : index;
    if (key == "for" && v >= 0 && v <= 1e6) {
      seconds = v;
    } else if (index < 0 || !SetParam(&values, index, v)) {
      return "err bad parameter '" + arg + "'";
    } else {
      mask |= 1u << index;
    }
  }
  if (mask == 0) return "err set: no parameter";
  std::lock_guard lock(fault_mu_);
  for (Link* l : links) {
    Timed undo{l, kParams, ++l->params_gen, l->params, mask};
    CopyParams(values, mask, &l->params);
    if (seconds > 0) timers_.insert({now + Nanos(int64_t(seconds * 1e9)), undo});
  }
  return "ok " + std::to_string(links.size());
}

// One control command (wanemu.h lists them); control thread only.
std::string Emulator::Execute(const std::string& line) {
  std::istringstream in(line);
  std::string cmd, sel_text, word;
  std::vector<std::string> args;
  in >> cmd >> sel_text;
  while (in >> word) args.push_back(word);
  if (cmd == "ping") return "ok";
  static const std::unordered_set<std::string> kCommands = {
      "blackhole", "heal", "flap", "set", "restore", "reset", "show"};
  if (!kCommands.count(cmd)) return "err unknown command '" + cmd + "'";
  if (cmd == "restore" && sel_text.empty()) sel_text = "*";
  Selector sel;
  if (!Selector::Parse(sel_text, &sel)) return "err bad link selector '" + sel_text + "'";
  std::vector<Link*> links;
  for (auto& [pair, link] : links_) {
    if (sel.Matches(pair.first, pair.second)) links.push_back(link.get());
  }
  if (links.empty()) return "err no link matches '" + sel_text + "'";
  Clock::time_point now = Clock::now();
  if (cmd == "set") return SetParams(links, args, now);
  std::vector<double> nums(args.size());
  for (size_t i = 0; i < args.size(); ++i) {
    if (!ParseNumber(args[i], &nums[i]) || nums[i] < 0 || nums[i] > 1e6) {
      return "err bad number '" + args[i] + "'";
    }
  }
  auto at = [now](double s) { return now + Nanos(int64_t(s * 1e9)); };
  const std::string ok_n = "ok " + std::to_string(links.size());
  if ((cmd == "blackhole" && args.size() <= 1) || (cmd == "heal" && args.empty())) {
    for (Link* l : links) {
      uint64_t gen = SetBlackhole(l, cmd == "blackhole");
      if (!nums.empty() && nums[0] > 0) timers_.insert({at(nums[0]), {l, kBlackholeOff, gen}});
    }
    return ok_n;
  }
  if (cmd == "flap" && args.size() == 3) {
    double down = nums[0], up = nums[1], duration = nums[2];
    if (down < 1e-3 || up < 1e-3 || duration / (down + up) > 1e5) return "err bad flap periods";
    for (Link* l : links) {
      uint64_t gen = SetBlackhole(l, true);
      bool on = true;
      for (double t = down; t < duration - 1e-6; t += on ? down : up) {
        on = !on;
        timers_.insert({at(t), {l, on ? kBlackholeOn : kBlackholeOff, gen}});
      }
      timers_.insert({at(duration), {l, kBlackholeOff, gen}});
    }
    return ok_n;
  }
  if (cmd == "restore" && args.empty()) {
    std::lock_guard lock(fault_mu_);
    for (Link* l : links) {
      SetBlackhole(l, false);
      l->params = l->configured;
      ++l->params_gen;
    }
    return ok_n;
  }
  if (cmd == "reset" && args.empty()) return "ok " + std::to_string(Reset(sel));
  if (cmd == "show" && args.empty()) return Show(links);
  return "err unknown command or wrong arguments: '" + line + "'";
}

// Serves the control socket's clients, one command line at a time, and runs timed changes.
void Emulator::ControlLoop() {
  struct Client {
    int fd;
    std::string buf;
  };
  std::vector<Client> clients;
  while (!stop_.load(std::memory_order_relaxed)) {
    std::vector<pollfd> fds{{control_fd_, POLLIN, 0}};
    for (const Client& c : clients) fds.push_back({c.fd, POLLIN, 0});
    Clock::time_point now = Clock::now(), wake = now + std::chrono::milliseconds(100);
    if (!timers_.empty()) wake = std::min(wake, timers_.begin()->first);
    int64_t wait = std::max<int64_t>(0, Nanos(wake - now).count());
    timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
    int ready = ppoll(fds.data(), fds.size(), &ts, nullptr);
    RunTimers(Clock::now());
    if (ready <= 0) continue;
    for (size_t i = clients.size(); i-- > 0;) {
      if (fds[i + 1].revents == 0) continue;
      char chunk[4096];
      ssize_t n = recv(clients[i].fd, chunk, sizeof chunk, 0);
      bool alive = n > 0;
      if (alive) clients[i].buf.append(chunk, size_t(n));
      size_t eol;
      while (alive && (eol = clients[i].buf.find('\n')) != std::string::npos) {
        std::string command = clients[i].buf.substr(0, eol);
        clients[i].buf.erase(0, eol + 1);
        alive = WriteAll(clients[i].fd, Execute(command) + "\n");
      }
      if (!alive || clients[i].buf.size() > 65536) {
        close(clients[i].fd);
        clients.erase(clients.begin() + static_cast<std::ptrdiff_t>(i));
      }
    }
    if (fds[0].revents & POLLIN) {
      int fd = accept4(control_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0) clients.push_back({fd, {}});
    }
  }
  for (const Client& c : clients) close(c.fd);
}

}  // namespace wanemu
