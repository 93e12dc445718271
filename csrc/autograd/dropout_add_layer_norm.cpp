// dropout_add_layer_norm_autograd: the eager path of the cpp and cuda backends. The forward and backward kernels
// (the dispatcher picks the CPU or CUDA ones) behind a C++ autograd node, so that an eager call crosses from
// Python once and its backward runs no Python. Contract (one backward; s, mean and rstd are outputs without a
// gradient): electra_fast/ops/dropout_add_layer_norm.py, whose custom op has the same backward for
// torch.compile and everything else that is not plain eager.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <tuple>

namespace electra_fast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using Four = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

Four forward_kernel(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight, const at::Tensor& bias,
                    double eps, double p, int64_t seed, int64_t offset) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("electra_fast_C::dropout_add_layer_norm", "")
                             .typed<Four(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         double, double, int64_t, int64_t)>();
  return op.call(x, residual, weight, bias, eps, p, seed, offset);
}

Four backward_kernel(const at::Tensor& grad, const at::Tensor& s, const at::Tensor& mean, const at::Tensor& rstd,
                     const at::Tensor& weight, double p, int64_t seed, int64_t offset, at::ScalarType x_dtype) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("electra_fast_C::dropout_add_layer_norm_backward", "")
                             .typed<Four(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, double, int64_t, int64_t, at::ScalarType)>();
  return op.call(grad, s, mean, rstd, weight, p, seed, offset, x_dtype);
}

struct DropoutAddLayerNorm : public torch::autograd::Function<DropoutAddLayerNorm> {
  // (y, s, mean, rstd); s, mean and rstd are saved for backward and have no gradient
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& residual,
                               const at::Tensor& weight, const at::Tensor& bias, double eps, double p, int64_t seed,
                               int64_t offset) {
    auto [y, s, mean, rstd] = forward_kernel(x, residual, weight, bias, eps, p, seed, offset);
    ctx->saved_data["p"] = p;
    ctx->saved_data["seed"] = seed;
    ctx->saved_data["offset"] = offset;
    ctx->saved_data["x_dtype"] = x.scalar_type();
    ctx->save_for_backward({s, mean, rstd, weight});
    ctx->mark_non_differentiable({s, mean, rstd});
    ctx->set_materialize_grads(false);  // else autograd allocates zeros for the gradients of s, mean and rstd
    return {y, s, mean, rstd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "electra_fast dropout_add_layer_norm supports one backward only; for a double backward "
                "(create_graph=True) use electra_fast.reference.dropout_add_layer_norm");
    variable_list grads(8);  // one per forward argument
    const at::Tensor& grad = grad_outputs[0];
    if (!grad.defined()) return grads;
    const variable_list saved = ctx->get_saved_variables();
    auto [dx, dresidual, dweight, dbias] =
        backward_kernel(grad.contiguous(), saved[0], saved[1], saved[2], saved[3], ctx->saved_data["p"].toDouble(),
                        ctx->saved_data["seed"].toInt(), ctx->saved_data["offset"].toInt(),
                        ctx->saved_data["x_dtype"].toScalarType());
    grads[0] = dx;
    grads[1] = dresidual;
    grads[2] = dweight;
    grads[3] = dbias;
    return grads;
  }
};

Four dropout_add_layer_norm_autograd(const at::Tensor& x, const at::Tensor& residual, const at::Tensor& weight,
                                     const at::Tensor& bias, double eps, double p, int64_t seed, int64_t offset) {
  variable_list out = DropoutAddLayerNorm::apply(x, residual, weight, bias, eps, p, seed, offset);
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def("dropout_add_layer_norm_autograd(Tensor x, Tensor residual, Tensor weight, Tensor bias, float eps, float p, "
        "int seed, int offset) -> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CompositeImplicitAutograd, m) {
  m.impl("dropout_add_layer_norm_autograd", &electra_fast::dropout_add_layer_norm_autograd);
}
