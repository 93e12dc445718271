// dropout_autograd: the eager path of the cpp and cuda backends. The dropout kernel (the dispatcher picks the
// CPU or CUDA one) behind a C++ autograd node, whose backward is the same node on the upstream gradient: the
// mask is drawn again, and a second backward is dropout once more. Contract: electra_fast/ops/dropout.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace electra_fast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor dropout_kernel(const at::Tensor& x, double p, int64_t seed, int64_t offset) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("electra_fast_C::dropout", "")
                             .typed<at::Tensor(const at::Tensor&, double, int64_t, int64_t)>();
  return op.call(x, p, seed, offset);
}

struct Dropout : public torch::autograd::Function<Dropout> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, double p, int64_t seed, int64_t offset) {
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["offset"] = offset;
    return dropout_kernel(x, p, seed, offset);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor& grad = grad_outputs[0];
    if (!grad.defined()) return {at::Tensor(), at::Tensor(), at::Tensor(), at::Tensor()};
    return {Dropout::apply(grad.contiguous(), ctx->saved_data["p"].toDouble(), ctx->saved_data["seed"].toInt(),
                           ctx->saved_data["offset"].toInt()),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

at::Tensor dropout_autograd(const at::Tensor& x, double p, int64_t seed, int64_t offset) {
  return Dropout::apply(x, p, seed, offset);
}

}  // namespace
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def("dropout_autograd(Tensor x, float p, int seed, int offset) -> Tensor");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CompositeImplicitAutograd, m) {
  m.impl("dropout_autograd", &electra_fast::dropout_autograd);
}
