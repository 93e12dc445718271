// The split of a kernel's rows into parallel tasks of whole rows, shared by the CPU row kernels. It depends only
// on the shape, never on the thread count, so per-task partial sums (of a bias or LayerNorm weight gradient)
// summed in task order give the same result whatever the number of threads.
#pragma once
#include <algorithm>
#include <cstdint>

namespace electra_fast {
namespace cpu {

// The rows of x [..., n] (numel / n of them) in tasks of rows_per_task consecutive rows, the last one shorter:
// at least grain_elements elements a task (a fork/join costs more than less work) and at most max_tasks tasks.
struct RowTasks {
  int64_t rows, n, rows_per_task, tasks;

  RowTasks(int64_t numel, int64_t n_, int64_t grain_elements, int64_t max_tasks)
      : rows(n_ == 0 ? 0 : numel / n_), n(n_) {
    const int64_t grain_rows = std::max<int64_t>(1, grain_elements / std::max<int64_t>(n, 1));
    rows_per_task = std::max(grain_rows, (rows + max_tasks - 1) / max_tasks);
    tasks = (rows + rows_per_task - 1) / rows_per_task;
  }
  int64_t begin(int64_t t) const { return t * rows_per_task; }
  int64_t end(int64_t t) const { return std::min(rows, begin(t) + rows_per_task); }
};

}  // namespace cpu
}  // namespace electra_fast
