// rtd_loss_autograd: the eager path of the cpp and cuda backends. The same kernels as rtd_loss_fwd (the
// dispatcher picks the CPU or CUDA one), behind a C++ autograd node, so that an eager call crosses from
// Python once and its backward runs no Python. Contract (one backward; the saved gradient returned as it is
// for the scalar 1 of a CPU loss.backward()): electra_fast/ops/rtd_loss.py, whose custom op has the same
// backward for torch.compile and everything else that is not plain eager.
#include <ATen/ATen.h>
#include <torch/autograd.h>
#include <torch/library.h>

namespace electra_fast {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

std::tuple<at::Tensor, at::Tensor> rtd_loss_kernel(const at::Tensor& logits, const at::Tensor& labels,
                                                   const c10::optional<at::Tensor>& mask,
                                                   const c10::optional<at::Tensor>& weight, int64_t reduction,
                                                   bool compute_grad) {
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("electra_fast_C::rtd_loss_fwd", "")
                             .typed<std::tuple<at::Tensor, at::Tensor>(
                                 const at::Tensor&, const at::Tensor&, const c10::optional<at::Tensor>&,
                                 const c10::optional<at::Tensor>&, int64_t, bool)>();
  return op.call(logits, labels, mask, weight, reduction, compute_grad);
}

struct RtdLoss : public torch::autograd::Function<RtdLoss> {
  // (loss, grad): grad = d loss / d logits for an upstream gradient of 1, saved for backward, not differentiable
  static variable_list forward(AutogradContext* ctx, const at::Tensor& logits, const at::Tensor& labels,
                               const c10::optional<at::Tensor>& mask, const c10::optional<at::Tensor>& weight,
                               int64_t reduction, bool compute_grad) {
    auto [loss, grad] = rtd_loss_kernel(logits, labels, mask, weight, reduction, compute_grad);
    ctx->saved_data["compute_grad"] = compute_grad;
    ctx->save_for_backward({grad});
    ctx->mark_non_differentiable({grad});
    ctx->set_materialize_grads(false);  // else autograd allocates zeros for the grad output's gradient
    return {loss, grad};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    TORCH_CHECK(ctx->saved_data["compute_grad"].toBool(),
                "electra_fast::rtd_loss was called with compute_grad=False; it has no gradient");
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "electra_fast rtd_loss supports one backward only (its gradient is computed in the forward); for a "
                "double backward (create_graph=True) use electra_fast.reference.rtd_loss");
    variable_list grads(6);  // one per forward argument; only logits has a gradient
    const at::Tensor& grad_loss = grad_outputs[0];
    if (!grad_loss.defined()) return grads;
    at::Tensor grad = ctx->get_saved_variables()[0];
    const bool is_one = grad_loss.dim() == 0 && grad_loss.is_cpu() && grad_loss.item<double>() == 1.0;
    grads[0] = is_one ? grad : grad * grad_loss;
    return grads;
  }
};

std::tuple<at::Tensor, at::Tensor> rtd_loss_autograd(const at::Tensor& logits, const at::Tensor& labels,
                                                     const c10::optional<at::Tensor>& mask,
                                                     const c10::optional<at::Tensor>& weight, int64_t reduction,
                                                     bool compute_grad) {
  variable_list out = RtdLoss::apply(logits, labels, mask, weight, reduction, compute_grad);
  return {out[0], out[1]};
}

}  // namespace
}  // namespace electra_fast

TORCH_LIBRARY_FRAGMENT(electra_fast_C, m) {
  m.def(
      "rtd_loss_autograd(Tensor logits, Tensor labels, Tensor? mask, Tensor? weight, int reduction, "
      "bool compute_grad) -> (Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(electra_fast_C, CompositeImplicitAutograd, m) {
  m.impl("rtd_loss_autograd", &electra_fast::rtd_loss_autograd);
}
