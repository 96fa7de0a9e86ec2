// libtorch's own gloo process group (c10d::ProcessGroupGloo, compiled into libtorch_cpu), for
// data-parallel training on CPUs across processes and machines: what Python's
// `init_process_group(backend="gloo")` creates, with the same TCPStore rendezvous.
//
// Why a header check: the PyPI wheel ships ProcessGroupGloo.hpp but not the gloo headers it
// includes. Only declarations are needed from them (every gloo function called runs inside
// libtorch), so Debian's libgloo-dev serves; without them this file builds stubs that say so.
#include <cstdint>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>

#include <ATen/ATen.h>

#ifdef NCF_WITH_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace {
int gloo_fail(const char* what, char* err, size_t err_len) {
  if (err_len > 0) {
    std::strncpy(err, what, err_len - 1);
    err[err_len - 1] = '\0';
  }
  return 1;
}

#ifdef NCF_WITH_GLOO
// Runs `body`, reporting a thrown error's message (libtorch's without its C++ backtrace, which
// says nothing to a user) into err.
template <typename Body>
int guarded(char* err, size_t err_len, Body body) {
  try {
    body();
    return 0;
  } catch (const c10::Error& e) {
    return gloo_fail(e.what_without_backtrace(), err, err_len);
  } catch (const std::exception& e) {
    return gloo_fail(e.what(), err, err_len);
  }
}

// The process group, and the store it met at, held apart: abort() closes the group's
// connections but keeps the store (served here on rank 0) up for the others' roll call.
struct Group {
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  c10::intrusive_ptr<c10d::Store> store;
};

c10d::ProcessGroupGloo& live(void* group) {
  auto& pg = static_cast<Group*>(group)->pg;
  if (!pg) throw std::runtime_error("the gloo group was aborted after an earlier failure");
  return *pg;
}
#endif
}  // namespace

extern "C" {

int ncf_gloo_available() {
#ifdef NCF_WITH_GLOO
  return 1;
#else
  return 0;
#endif
}

// Joins a group of `world` ranks as `rank`. The store is a c10d TCPStore at host:port, served by
// this process when `serve` (then it waits for the other ranks to connect) or by someone else
// (torchrun's agent, or rank 0). Keys live under `prefix`. Every wait is bounded by timeout_ms.
int ncf_gloo_new(const char* host, uint16_t port, int serve, int rank, int world, int64_t timeout_ms,
                 const char* prefix, void** out, char* err, size_t err_len) {
#ifdef NCF_WITH_GLOO
  return guarded(err, err_len, [&] {
    auto timeout = std::chrono::milliseconds(timeout_ms);
    c10d::TCPStoreOptions opts;
    opts.port = port;
    opts.isServer = serve != 0;
    // Every rank says how many there are (as PyTorch's workers do): each client then counts itself
    // in, and the server waits until all have (its own connection included).
    opts.numWorkers = world;
    opts.timeout = timeout;
    auto tcp = c10::make_intrusive<c10d::TCPStore>(std::string(host), opts);
    auto store = c10::make_intrusive<c10d::PrefixStore>(std::string(prefix), tcp);
    auto options = c10d::ProcessGroupGloo::Options::create(timeout);
    options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    auto* group = new Group{c10::make_intrusive<c10d::ProcessGroupGloo>(store, rank, world, options), store};
    *out = group;
  });
#else
  (void)host, (void)port, (void)serve, (void)rank, (void)world, (void)timeout_ms, (void)prefix, (void)out;
  return gloo_fail("this build of ncf-rs has no gloo (its headers were missing at build time): install "
                   "libgloo-dev (`make setup` does) and rebuild",
                   err, err_len);
#endif
}

// Replaces `t` with its element-wise sum over the group's ranks (in place).
int ncf_gloo_all_reduce_sum(void* group, at::Tensor* t, char* err, size_t err_len) {
#ifdef NCF_WITH_GLOO
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> tensors{*t};
    live(group).allreduce(tensors)->wait();
  });
#else
  (void)group, (void)t;
  return gloo_fail("no gloo in this build", err, err_len);
#endif
}

// Replaces `t` with rank `root`'s (in place).
int ncf_gloo_broadcast(void* group, at::Tensor* t, int root, char* err, size_t err_len) {
#ifdef NCF_WITH_GLOO
  return guarded(err, err_len, [&] {
    std::vector<at::Tensor> tensors{*t};
    c10d::BroadcastOptions opts;
    opts.rootRank = root;
    live(group).broadcast(tensors, opts)->wait();
  });
#else
  (void)group, (void)t, (void)root;
  return gloo_fail("no gloo in this build", err, err_len);
#endif
}

// Closes the group's connections (peers blocked on this rank fail at once); the store stays up.
void ncf_gloo_abort(void* group) {
#ifdef NCF_WITH_GLOO
  static_cast<Group*>(group)->pg.reset();
#else
  (void)group;
#endif
}

void ncf_gloo_free(void* group) {
#ifdef NCF_WITH_GLOO
  delete static_cast<Group*>(group);
#else
  (void)group;
#endif
}
}
