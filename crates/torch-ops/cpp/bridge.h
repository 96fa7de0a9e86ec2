// What every C++ bridge file here shares with Rust's side of the call: tensor handle lists in,
// errors out as a message in `err` (0 = success) so nothing unwinds into Rust.
#pragma once
#include <ATen/ATen.h>
#include <cstring>
#include <exception>
#include <vector>

namespace ncf_bridge {

// The tensors behind n handles.
inline std::vector<at::Tensor> list(at::Tensor** ts, size_t n) {
  std::vector<at::Tensor> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) out.push_back(*ts[i]);
  return out;
}

// Writes e's message into err (truncated to err_len, always terminated); returns 1.
inline int fail(const std::exception& e, char* err, size_t err_len) {
  if (err_len > 0) {
    std::strncpy(err, e.what(), err_len - 1);
    err[err_len - 1] = '\0';
  }
  return 1;
}

// Runs `make` and hands its tensor to Rust as a new handle (tch frees it), or reports its error.
template <typename Make>
int new_tensor(at::Tensor** out, char* err, size_t err_len, Make make) {
  try {
    *out = new at::Tensor(make());
    return 0;
  } catch (const std::exception& e) {
    return fail(e, err, err_len);
  }
}

}  // namespace ncf_bridge
