// Central finite differences for the gradient tests (fp64).
#pragma once

#include <functional>

#include <ATen/ATen.h>
#include <c10/core/GradMode.h>

namespace saliq::test {

// d(sum(f() * probe)) / dp by central differences, entry by entry (p is changed in place and restored).
inline at::Tensor numeric_grad(const std::function<at::Tensor()>& f, at::Tensor p, const at::Tensor& probe,
                               double eps) {
    c10::NoGradGuard no_grad;
    at::Tensor grad = at::zeros_like(p);
    auto flat = p.view({-1});
    for (int64_t i = 0; i < flat.numel(); ++i) {
        const double old = flat[i].item<double>();
        flat[i] = old + eps;
        const double up = (f() * probe).sum().item<double>();
        flat[i] = old - eps;
        const double down = (f() * probe).sum().item<double>();
        flat[i] = old;
        grad.view({-1})[i] = (up - down) / (2 * eps);
    }
    return grad;
}

}  // namespace saliq::test
