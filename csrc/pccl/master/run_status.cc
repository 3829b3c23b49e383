#include "pccl/master/run_status.h"

#include <utility>

namespace pccl::master {

void Histogram::Observe(double seconds) {
  size_t i = 0;
  while (i < kBuckets && seconds > kBounds[i]) ++i;
  ++counts[i];
  sum += seconds;
  ++count;
}

void RunLog::Add(TimePoint at, std::string kind, std::string text) {
  events_.push_back(RunEvent{at, 0, std::move(kind), std::move(text)});
  while (events_.size() > kMaxEvents) events_.pop_front();
}

}  // namespace pccl::master
