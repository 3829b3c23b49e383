// wanemu's data path: config, the TUN, the reader and writer threads, stats, and main.
// The whole story, the config format and the control commands: wanemu.h.

#include "wanemu.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

namespace wanemu {

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "wanemu: %s\n", what.c_str());
  std::exit(2);
}

void Emulator::LoadConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) Die("cannot read config " + path);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    if (auto hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::istringstream words(line);
    std::string key;
    if (!(words >> key)) continue;
    bool ok = true;
    if (key == "tun") {
      ok = static_cast<bool>(words >> tun_name_);
    } else if (key == "node") {
      int index;
      std::string ip;
      ok = static_cast<bool>(words >> index >> ip);
      in_addr addr{};
      if (ok && inet_pton(AF_INET, ip.c_str(), &addr) == 1) {
        node_by_ip_[addr.s_addr] = index;
      } else {
        ok = false;
      }
    } else if (key == "link") {
      auto link = std::make_unique<Link>();
      LinkParams& p = link->params;
      ok = static_cast<bool>(words >> link->src >> link->dst >> p.delay_us >> p.jitter_us >>
                             p.rate_bps >> p.loss >> p.queue_bytes);
      link->configured = p;
      if (ok) links_[{link->src, link->dst}] = std::move(link);
    } else if (key == "seed") {
      uint64_t seed;
      ok = static_cast<bool>(words >> seed);
      rng_.seed(seed);
    } else if (key == "memory_bytes") {
      ok = static_cast<bool>(words >> memory_cap_);
    } else {
      ok = false;
    }
    if (!ok) Die(path + ":" + std::to_string(line_no) + ": cannot parse '" + line + "'");
  }
  if (tun_name_.empty()) Die("config has no 'tun NAME' line");
  unshaped_.src = unshaped_.dst = -1;
}

void Emulator::AttachTun() {
  fd_ = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  if (fd_ < 0) Die(std::string("open /dev/net/tun: ") + std::strerror(errno));
  ifreq ifr{};
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  std::snprintf(ifr.ifr_name, IFNAMSIZ, "%s", tun_name_.c_str());
  if (ioctl(fd_, TUNSETIFF, &ifr) < 0) {
    Die("TUNSETIFF " + tun_name_ + ": " + std::strerror(errno));
  }
}

void Emulator::Start() {
  reader_ = std::thread([this] { ReadLoop(); });
  writer_ = std::thread([this] { WriteLoop(); });
  if (control_fd_ >= 0) control_ = std::thread([this] { ControlLoop(); });
}

void Emulator::Stop() {
  stop_.store(true);
  {
    std::lock_guard lock(mu_);
    cv_.notify_all();
  }
  reader_.join();
  writer_.join();
  if (control_.joinable()) control_.join();
  if (control_fd_ >= 0) {
    close(control_fd_);
    unlink(control_path_.c_str());
  }
}

void Emulator::WriteStats(const std::string& path, uint64_t seq) {
  std::ostringstream out;
  out << "{\"seq\": " << seq << ", \"unknown_packets\": " << unknown_packets_.load()
      << ", \"write_errors\": " << write_errors_.load()
      << ", \"rst_injected\": " << rst_injected_.load() << ", \"links\": [";
  bool first = true;
  auto dump = [&](const Link& l) {
    const LinkStats& s = l.stats;
    out << (first ? "" : ", ") << "{\"src\": " << l.src << ", \"dst\": " << l.dst
        << ", \"rx_packets\": " << s.rx_packets << ", \"rx_bytes\": " << s.rx_bytes
        << ", \"tx_packets\": " << s.tx_packets << ", \"tx_bytes\": " << s.tx_bytes
        << ", \"drop_loss\": " << s.drop_loss << ", \"drop_queue\": " << s.drop_queue
        << ", \"drop_memory\": " << s.drop_memory << ", \"drop_fault\": " << s.drop_fault
        << ", \"max_backlog_bytes\": " << s.max_backlog_bytes << "}";
    first = false;
  };
  for (const auto& [key, link] : links_) dump(*link);
  dump(unshaped_);
  out << "]}\n";
  std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << out.str();
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::fprintf(stderr, "wanemu: rename %s: %s\n", tmp.c_str(), std::strerror(errno));
  }
}

Link* Emulator::Classify(const uint8_t* p, size_t n) {
  if (n < 20 || (p[0] >> 4) != 4) return nullptr;
  uint32_t src, dst;
  std::memcpy(&src, p + 12, 4);
  std::memcpy(&dst, p + 16, 4);
  auto s = node_by_ip_.find(src), d = node_by_ip_.find(dst);
  if (s == node_by_ip_.end() || d == node_by_ip_.end()) return nullptr;
  auto it = links_.find({s->second, d->second});
  return it == links_.end() ? nullptr : it->second.get();
}

// Steps 2-4 of the story: decides the packet's fate and departure time. Reader only.
bool Emulator::Admit(Link& link, const LinkParams& p, size_t size, Clock::time_point now,
                     Clock::time_point* departure) {
  LinkStats& s = link.stats;
  if (p.loss > 0 && uniform_(rng_) < p.loss) {
    s.drop_loss++;
    return false;
  }
  Clock::time_point done = now;
  if (p.rate_bps > 0) {
    Clock::time_point start = std::max(now, link.busy_until);
    double backlog = std::chrono::duration<double>(start - now).count() * p.rate_bps / 8;
    if (backlog + size > static_cast<double>(p.queue_bytes) && backlog > 0) {
      s.drop_queue++;
      return false;
    }
    if (backlog > s.max_backlog_bytes.load()) s.max_backlog_bytes = int64_t(backlog);
    done = start + Nanos(static_cast<int64_t>(size * 8 / p.rate_bps * 1e9));
    link.busy_until = done;
  }
  int64_t jitter_ns = 0;
  if (p.jitter_us > 0) {
    jitter_ns = static_cast<int64_t>((uniform_(rng_) * 2 - 1) * p.jitter_us * 1000);
  }
  Clock::time_point leave = done + Nanos(p.delay_us * 1000 + jitter_ns);
  leave = std::max(leave, link.last_departure);  // no reordering within a link
  link.last_departure = leave;
  *departure = leave;
  return true;
}

void Emulator::ReadLoop() {
  pollfd pfd{fd_, POLLIN, 0};
  while (!stop_.load(std::memory_order_relaxed)) {
    if (poll(&pfd, 1, 100) <= 0) continue;
    std::vector<uint8_t> buf(kMaxPacket);
    ssize_t n = read(fd_, buf.data(), buf.size());
    if (n <= 0) {
      if (n < 0 && errno != EINTR && errno != EAGAIN) {
        std::fprintf(stderr, "wanemu: read %s: %s\n", tun_name_.c_str(), std::strerror(errno));
      }
      continue;
    }
    buf.resize(static_cast<size_t>(n));
    if (buf.size() <= kMaxPacket / 4) buf.shrink_to_fit();  // ACKs: don't hold 64 KiB each
    Clock::time_point now = Clock::now();
    Link* link = Classify(buf.data(), buf.size());
    if (link == nullptr) {
      unknown_packets_++;
      link = &unshaped_;
    }
    link->stats.rx_packets++;
    link->stats.rx_bytes += static_cast<uint64_t>(n);
    Clock::time_point departure = now;
    if (link != &unshaped_ && !Shape(*link, buf, now, &departure)) continue;
    if (held_bytes_.load() + buf.size() > static_cast<uint64_t>(memory_cap_)) {
      link->stats.drop_memory++;
      continue;
    }
    held_bytes_ += buf.size();
    std::lock_guard lock(mu_);
    bool was_empty = link->fifo.empty();
    link->fifo.push_back(Packet{departure, std::move(buf)});
    if (was_empty && departure < next_wake_) cv_.notify_one();
  }
}

// The link whose head leaves first, or nullptr. Needs mu_.
Link* Emulator::EarliestLocked() {
  Link* best = unshaped_.fifo.empty() ? nullptr : &unshaped_;
  for (auto& [key, link] : links_) {
    if (!link->fifo.empty() &&
        (best == nullptr || link->fifo.front().departure < best->fifo.front().departure)) {
      best = link.get();
    }
  }
  return best;
}

void Emulator::WriteLoop() {
  std::unique_lock lock(mu_);
  while (!stop_.load(std::memory_order_relaxed)) {
    Link* link = EarliestLocked();
    if (link == nullptr) {
      next_wake_ = Clock::time_point::max();
      cv_.wait_for(lock, std::chrono::milliseconds(100));
      continue;
    }
    Clock::time_point due = link->fifo.front().departure;
    if (due > Clock::now()) {
      next_wake_ = due;
      cv_.wait_until(lock, due);
      continue;
    }
    next_wake_ = Clock::time_point::min();  // busy: the reader need not wake us
    Packet packet = std::move(link->fifo.front());
    link->fifo.pop_front();
    lock.unlock();
    if (link->blackhole.load()) {  // cut while on the wire
      held_bytes_ -= packet.bytes.size();
      link->stats.drop_fault++;
      lock.lock();
      continue;
    }
    ssize_t n = write(fd_, packet.bytes.data(), packet.bytes.size());
    held_bytes_ -= packet.bytes.size();
    if (n != static_cast<ssize_t>(packet.bytes.size())) {
      write_errors_++;
    } else {
      link->stats.tx_packets++;
      link->stats.tx_bytes += packet.bytes.size();
    }
    lock.lock();
  }
}

}  // namespace wanemu

int main(int argc, char** argv) {
  using wanemu::Die;
  const char* kUsage = "usage: wanemu --config FILE [--stats FILE] [--control SOCKET]";
  std::string config, stats, control;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--config" && i + 1 < argc) {
      config = argv[++i];
    } else if (arg == "--stats" && i + 1 < argc) {
      stats = argv[++i];
    } else if (arg == "--control" && i + 1 < argc) {
      control = argv[++i];
    } else {
      Die(kUsage);
    }
  }
  if (config.empty()) Die(kUsage);
  prctl(PR_SET_TIMERSLACK, 1UL);  // wake-ups on time, not up to 50 us late

  sigset_t signals;
  sigemptyset(&signals);
  for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&signals, s);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);  // threads inherit the mask

  wanemu::Emulator emu;
  emu.LoadConfig(config);
  emu.AttachTun();
  if (!control.empty()) emu.ListenControl(control);
  emu.Start();
  std::printf("wanemu ready\n");
  std::fflush(stdout);

  uint64_t seq = 0;
  if (!stats.empty()) emu.WriteStats(stats, seq);
  for (;;) {
    int sig = 0;
    sigwait(&signals, &sig);
    if (sig == SIGUSR1) {
      if (!stats.empty()) emu.WriteStats(stats, ++seq);
      continue;
    }
    break;
  }
  emu.Stop();
  if (!stats.empty()) emu.WriteStats(stats, ++seq);
  return 0;
}
