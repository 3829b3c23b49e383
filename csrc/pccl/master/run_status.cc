#include "pccl/master/run_status.h"

#include <utility>

namespace pccl::master {

void RunLog::Add(TimePoint at, std::string kind, std::string text) {
  events_.push_back(RunEvent{at, 0, std::move(kind), std::move(text)});
  while (events_.size() > kMaxEvents) events_.pop_front();
}

}  // namespace pccl::master
