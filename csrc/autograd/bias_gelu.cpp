// bias_gelu_autograd: the eager path of the cpp and cuda backends. The bias_gelu kernel (the dispatcher picks the
// CPU or CUDA one) behind a C++ autograd node keeping x and bias, whose backward is the bias_gelu_backward kernel.
// That backward is itself a node whose own backward raises: there is no double backward (a create_graph=True
// backward works; differentiating its result fails with a clear error). Contract: electra_fast/ops/bias_gelu.py.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace electra_fast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

at::Tensor bias_gelu_kernel(const at::Tensor& x, const at::Tensor& bias) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("electra_fast_C::bias_gelu", "")
                             .typed<at::Tensor(const at::Tensor&, const at::Tensor&)>();
  return op.call(x, bias);
}

std::tuple<at::Tensor, at::Tensor> bias_gelu_backward_kernel(const at::Tensor& grad, const at::Tensor& x,
                                                             const at::Tensor& bias) {
  static const auto op =
      c10::Dispatcher::singleton()
          .findSchemaOrThrow("electra_fast_C::bias_gelu_backward", "")
          .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&)>();
  return op.call(grad, x, bias);
}

// (dx, dbias) of bias_gelu; its own gradient is not implemented.
struct BiasGeluBackward : public torch::autograd::Function<BiasGeluBackward> {
  static variable_list forward(AutogradContext* /*ctx*/, const at::Tensor& grad, const at::Tensor& x,
                               const at::Tensor& bias) {
    auto [dx, dbias] = bias_gelu_backward_kernel(grad, x, bias);
    return {dx, dbias};
  }

  static variable_list backward(AutogradContext* /*ctx*/, variable_list /*grad_outputs*/) {
    TORCH_CHECK(false,
                "electra_fast bias_gelu supports one backward only: its gradient has no gradient (double backward); "
                "for a second derivative use electra_fast.reference.bias_gelu");
    return {};
  }
};

struct BiasGelu : public torch::autograd::Function<BiasGelu> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& bias) {
    ctx->save_for_backward({x, bias});
    return bias_gelu_kernel(x, bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor& grad = grad_outputs[0];
    if (!grad.defined()) return {at::Tensor(), at::Tensor()};
    const variable_list saved = ctx->get_saved_variables();
    return BiasGeluBackward::apply(grad.contiguous(), saved[0], saved[1]);
  }
};

at::Tensor bias_gelu_autograd(const at::Tensor& x, const at::Tensor& bias) { return BiasGelu::apply(x, bias); }

}  // namespace
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) { m.def("bias_gelu_autograd(Tensor x, Tensor bias) -> Tensor"); }

TORCH_LIBRARY_IMPL(electra_fast_C, CompositeImplicitAutograd, m) {
  m.impl("bias_gelu_autograd", &electra_fast::bias_gelu_autograd);
}
