// The extension module electra_fast._C. Ops register themselves per file with TORCH_LIBRARY_FRAGMENT
// (schema, next to their CPU kernel in csrc/cpu/<op>.cpp) and TORCH_LIBRARY_IMPL (CPU and CUDA), so
// adding an op touches only its own files. This file holds the module entry point, build facts and the
// instruction set each CPU kernel runs.
#include <Python.h>
#include <torch/library.h>

#include <string>

#include "electra_fast/cpu_isa.h"

namespace {

std::string build_info() {
  std::string info = "compiler=";
#if defined(__clang__)
  info += "clang " __clang_version__;
#elif defined(__GNUC__)
  info += "gcc " + std::to_string(__GNUC__) + "." + std::to_string(__GNUC_MINOR__);
#else
  info += "unknown";
#endif
#if defined(EF_WITH_CUDA)
  info += ";cuda=1";
#else
  info += ";cuda=0";
#endif
#if defined(_OPENMP)
  info += ";openmp=1";
#else
  info += ";openmp=0";
#endif
  return info;
}

// Kernel name -> the build it runs on this CPU: "avx512", "avx2" or "baseline" (cpu_isa.h).
c10::Dict<std::string, std::string> cpu_isa() {
  c10::Dict<std::string, std::string> out;
  for (const auto& [kernel, isa] : electra_fast::cpu::cpu_kernel_isas()) out.insert(kernel, isa);
  return out;
}

}  // namespace

TORCH_LIBRARY(electra_fast_C, m) {
  m.def("build_info", &build_info);
  m.def("cpu_isa", &cpu_isa);
}

extern "C" {
// Importing electra_fast._C from Python loads this library, which runs the registrations above.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
