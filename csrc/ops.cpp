// The extension module electra_fast._C. Ops register themselves per file with TORCH_LIBRARY_FRAGMENT
// (schema, next to their CPU kernel in csrc/cpu/<op>.cpp) and TORCH_LIBRARY_IMPL (CPU and CUDA), so
// adding an op touches only its own files. This file holds the module entry point and build facts.
#include <Python.h>
#include <torch/library.h>

#include <string>

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

}  // namespace

TORCH_LIBRARY(electra_fast_C, m) { m.def("build_info", &build_info); }

extern "C" {
// Importing electra_fast._C from Python loads this library, which runs the registrations above.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}
