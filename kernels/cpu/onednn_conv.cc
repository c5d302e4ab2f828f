// OnednnConv (kernels/cpu/onednn_conv.h): primitives, reorders and buffers per Conv2dDims.
#include "kernels/cpu/onednn_conv.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <oneapi/dnnl/dnnl.hpp>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "kernels/cpu/common.h"
#include "kernels/cpu/conv2d.h"
#include "runtime/base/check.h"

namespace pstrain::cpu {
namespace {

using dnnl::memory;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

// Shapes kept per worker (a training step has up to two sub-batch sizes per conv layer;
// evaluation at another batch size adds as many again).
constexpr size_t kMaxCachedShapes = 16;

// Activation formats oneDNN may choose: `any` (its blocked formats, reordered from and to
// NHWC) unless PSTRAIN_ONEDNN_FORMAT=nhwc asks for NHWC activations (weights stay `any`).
bool activations_any() {
  static const bool any = [] {
    const char* v = std::getenv("PSTRAIN_ONEDNN_FORMAT");
    return v == nullptr || std::strcmp(v, "nhwc") != 0;
  }();
  return any;
}

// A tensor as the caller holds it (`user`, its pointer set per call) and as a primitive wants
// it (`inner`: the same memory when the formats match, else an owned buffer plus a reorder).
struct Port {
  Port() = default;
  Port(const dnnl::engine& eng, const memory::desc& user_md, const memory::desc& prim_md,
       bool input)
      : user(user_md, eng, DNNL_MEMORY_NONE), reordered(user_md != prim_md) {
    if (!reordered) {
      inner = user;
      return;
    }
    inner = memory(prim_md, eng);  // owned
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    const dnnl::reorder::primitive_desc pd =
        input ? dnnl::reorder::primitive_desc(eng, user_md, eng, prim_md, attr)
              : dnnl::reorder::primitive_desc(eng, prim_md, eng, user_md, attr);
    if (pd.scratchpad_desc().get_size() > 0) scratch = memory(pd.scratchpad_desc(), eng);
    reorder = dnnl::reorder(pd);
    args = {{DNNL_ARG_FROM, input ? user : inner}, {DNNL_ARG_TO, input ? inner : user}};
    if (scratch) args.emplace(DNNL_ARG_SCRATCHPAD, scratch);
  }
  // Points the caller's side at p.
  void bind(const float* p) { user.set_data_handle(const_cast<float*>(p)); }
  void to_inner(dnnl::stream& s) {
    if (reordered) reorder.execute(s, args);
  }
  void to_user(dnnl::stream& s) {
    if (reordered) reorder.execute(s, args);
  }

  memory user, inner, scratch;
  dnnl::reorder reorder;
  std::unordered_map<int, memory> args;  // the reorder's (memory objects are shared handles)
  bool reordered = false;
};

memory scratchpad_for(const dnnl::engine& eng, const memory::desc& md) {
  return md.get_size() > 0 ? memory(md, eng) : memory();
}

void add_scratch(std::unordered_map<int, memory>& args, const memory& scratch) {
  if (scratch) args.emplace(DNNL_ARG_SCRATCHPAD, scratch);
}

// The primitives of one Conv2dDims, with their argument maps (built once: a call only sets
// the caller's pointers into the memory objects they hold).
struct ConvPrimitives {
  ConvPrimitives(const dnnl::engine& eng, const Conv2dDims& d) {
    const memory::dim pad = d.ksize / 2;
    const memory::dims x_dims{d.n, d.c, d.h, d.w}, y_dims{d.n, d.k, d.h, d.w};
    const memory::dims w_dims{d.k, d.c, d.ksize, d.ksize}, b_dims{d.k};
    const memory::dims strides{1, 1}, pad_l{pad, pad}, pad_r{pad, pad};
    const memory::desc x_md(x_dims, dt::f32, tag::nhwc), y_md(y_dims, dt::f32, tag::nhwc);
    const memory::desc w_md(w_dims, dt::f32, tag::hwio), b_md(b_dims, dt::f32, tag::x);
    const tag act = activations_any() ? tag::any : tag::nhwc;
    const memory::desc x_any(x_dims, dt::f32, act), y_any(y_dims, dt::f32, act);
    const memory::desc w_any(w_dims, dt::f32, tag::any), b_any(b_dims, dt::f32, tag::any);
    const auto algo = dnnl::algorithm::convolution_direct;
    dnnl::primitive_attr attr;
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);

    const dnnl::convolution_forward::primitive_desc fwd_pd(
        dnnl::convolution_forward::desc(dnnl::prop_kind::forward_training, algo, x_any, w_any,
                                        b_any, y_any, strides, pad_l, pad_r),
        attr, eng);
    fwd = dnnl::convolution_forward(fwd_pd);
    fwd_scratch = scratchpad_for(eng, fwd_pd.scratchpad_desc());
    fwd_x = Port(eng, x_md, fwd_pd.src_desc(), true);
    fwd_w = Port(eng, w_md, fwd_pd.weights_desc(), true);
    fwd_b = Port(eng, b_md, fwd_pd.bias_desc(), true);
    fwd_y = Port(eng, y_md, fwd_pd.dst_desc(), false);
    fwd_impl = fwd_pd.impl_info_str();

    const dnnl::convolution_backward_data::primitive_desc bwd_d_pd(
        dnnl::convolution_backward_data::desc(algo, x_any, w_any, y_any, strides, pad_l, pad_r),
        attr, eng, fwd_pd);
    bwd_d = dnnl::convolution_backward_data(bwd_d_pd);
    bwd_d_scratch = scratchpad_for(eng, bwd_d_pd.scratchpad_desc());
    bwd_d_dx = Port(eng, x_md, bwd_d_pd.diff_src_desc(), false);
    bwd_d_w = Port(eng, w_md, bwd_d_pd.weights_desc(), true);
    bwd_d_dy = Port(eng, y_md, bwd_d_pd.diff_dst_desc(), true);

    const dnnl::convolution_backward_weights::primitive_desc bwd_w_pd(
        dnnl::convolution_backward_weights::desc(algo, x_any, w_any, b_any, y_any, strides, pad_l,
                                                 pad_r),
        attr, eng, fwd_pd);
    bwd_w = dnnl::convolution_backward_weights(bwd_w_pd);
    bwd_w_scratch = scratchpad_for(eng, bwd_w_pd.scratchpad_desc());
    bwd_w_x = Port(eng, x_md, bwd_w_pd.src_desc(), true);
    bwd_w_dy = Port(eng, y_md, bwd_w_pd.diff_dst_desc(), true);
    bwd_w_dw = Port(eng, w_md, bwd_w_pd.diff_weights_desc(), false);
    bwd_w_db = Port(eng, b_md, bwd_w_pd.diff_bias_desc(), false);
    // Backward data and weights read dy in the same format: reorder it once.
    dy_shared = bwd_d_pd.diff_dst_desc() == bwd_w_pd.diff_dst_desc();

    fwd_args = {{DNNL_ARG_SRC, fwd_x.inner},
                {DNNL_ARG_WEIGHTS, fwd_w.inner},
                {DNNL_ARG_BIAS, fwd_b.inner},
                {DNNL_ARG_DST, fwd_y.inner}};
    add_scratch(fwd_args, fwd_scratch);
    bwd_w_args = {{DNNL_ARG_SRC, bwd_w_x.inner},
                  {DNNL_ARG_DIFF_DST, bwd_w_dy.inner},
                  {DNNL_ARG_DIFF_WEIGHTS, bwd_w_dw.inner},
                  {DNNL_ARG_DIFF_BIAS, bwd_w_db.inner}};
    add_scratch(bwd_w_args, bwd_w_scratch);
    bwd_d_args = {{DNNL_ARG_DIFF_DST, dy_shared ? bwd_w_dy.inner : bwd_d_dy.inner},
                  {DNNL_ARG_WEIGHTS, bwd_d_w.inner},
                  {DNNL_ARG_DIFF_SRC, bwd_d_dx.inner}};
    add_scratch(bwd_d_args, bwd_d_scratch);
  }

  dnnl::convolution_forward fwd;
  memory fwd_scratch;
  Port fwd_x, fwd_w, fwd_b, fwd_y;
  std::string fwd_impl;
  dnnl::convolution_backward_data bwd_d;
  memory bwd_d_scratch;
  Port bwd_d_dx, bwd_d_w, bwd_d_dy;
  dnnl::convolution_backward_weights bwd_w;
  memory bwd_w_scratch;
  Port bwd_w_x, bwd_w_dy, bwd_w_dw, bwd_w_db;
  bool dy_shared = false;
  std::unordered_map<int, memory> fwd_args, bwd_w_args, bwd_d_args;
};

// The cached primitives of one worker (its own memory objects, stream and buffers).
struct WorkerCache {
  struct Entry {
    Conv2dDims d;
    std::unique_ptr<ConvPrimitives> prims;
    uint64_t last_use = 0;
  };

  // The primitives of d, created when missing (replacing the least recently used).
  ConvPrimitives& get(const dnnl::engine& eng, const Conv2dDims& d) {
    ++clock;
    Entry* oldest = nullptr;
    for (Entry& e : shapes) {
      if (e.d.n == d.n && e.d.h == d.h && e.d.w == d.w && e.d.c == d.c && e.d.k == d.k &&
          e.d.ksize == d.ksize) {
        e.last_use = clock;
        return *e.prims;
      }
      if (oldest == nullptr || e.last_use < oldest->last_use) oldest = &e;
    }
    if (shapes.size() < kMaxCachedShapes || oldest == nullptr) {
      shapes.emplace_back();
      oldest = &shapes.back();
    }
    oldest->d = d;
    oldest->prims = std::make_unique<ConvPrimitives>(eng, d);
    oldest->last_use = clock;
    return *oldest->prims;
  }

  dnnl::stream strm;
  std::vector<Entry> shapes;
  uint64_t clock = 0;
};

// oneDNN's own OpenMP threads (PSTRAIN_ONEDNN_THREADS=openmp) instead of the kernels' pool.
bool use_openmp() {
  static const bool omp = [] {
    const char* v = std::getenv("PSTRAIN_ONEDNN_THREADS");
    return v != nullptr && std::strcmp(v, "openmp") == 0;
  }();
  return omp;
}

}  // namespace

struct OnednnConv::Impl {
  explicit Impl(int t) : threads(std::max(1, t)), openmp(use_openmp()) {
    eng = dnnl::engine(dnnl::engine::kind::cpu, 0);
    workers.resize(static_cast<size_t>(openmp ? 1 : threads));
    for (WorkerCache& w : workers) w.strm = dnnl::stream(eng);
  }

  // Image groups of a call: fixed by the problem size alone (never the thread count), so
  // every thread count gives the same bits; 1 with OpenMP threading.
  int64_t groups(const Conv2dDims& d) const {
    if (openmp) return 1;
    const double flops = 2.0 * d.n * d.h * d.w * d.k * d.ksize * d.ksize * d.c;
    return chunk_count(flops, kChunkFlops, std::min<int64_t>(d.n, kConv2dBackwardGroups));
  }

  // Runs body(group, images [i0, i1), primitives of that sub-batch, stream) for every group,
  // on the kernels' pool (each call single-threaded) or, with OpenMP, once on this thread with
  // oneDNN's own threads.
  template <typename Body>
  void for_groups(const Conv2dDims& d, const Body& body) {
    const int64_t g_count = groups(d);
    const int max_workers = static_cast<int>(std::min<int64_t>(threads, g_count));
    thread_pool().run(g_count, openmp ? 1 : max_workers, [&](int64_t g, int worker) {
      omp_set_num_threads(openmp ? threads : 1);
      const auto [i0, i1] = split_range(d.n, g, g_count);
      Conv2dDims sub = d;
      sub.n = static_cast<int>(i1 - i0);
      WorkerCache& cache = workers[static_cast<size_t>(worker)];
      try {
        body(g, i0, cache.get(eng, sub), cache.strm);
      } catch (const dnnl::error& e) {
        PSTRAIN_CHECK(false, std::string("oneDNN conv2d: ") + e.what());
      }
    });
  }

  int threads;
  bool openmp;
  dnnl::engine eng;
  std::vector<WorkerCache> workers;
  std::vector<float> partial_dw, partial_db;  // groups 1.. of backward; grown, never shrunk
};

OnednnConv::OnednnConv(int threads) : impl_(std::make_unique<Impl>(threads)) {}
OnednnConv::~OnednnConv() = default;

void OnednnConv::forward(const float* x, const float* w, const float* b, float* y,
                         const Conv2dDims& d) {
  if (int64_t{d.n} * d.h * d.w * d.k == 0) return;
  PSTRAIN_CHECK(d.ksize % 2 == 1, "conv2d needs an odd kernel size");
  const int64_t x_img = int64_t{d.h} * d.w * d.c, y_img = int64_t{d.h} * d.w * d.k;
  impl_->for_groups(d, [&](int64_t, int64_t i0, ConvPrimitives& s, dnnl::stream& st) {
    s.fwd_x.bind(x + i0 * x_img);
    s.fwd_w.bind(w);
    s.fwd_b.bind(b);
    s.fwd_y.bind(y + i0 * y_img);
    s.fwd_x.to_inner(st);
    s.fwd_w.to_inner(st);
    s.fwd_b.to_inner(st);
    s.fwd.execute(st, s.fwd_args);
    s.fwd_y.to_user(st);
    st.wait();
  });
}

void OnednnConv::backward(const float* x, const float* w, const float* dy, float* dx, float* dw,
                          float* db, const Conv2dDims& d) {
  const int64_t dw_size = int64_t{d.ksize} * d.ksize * d.c * d.k;
  if (int64_t{d.n} * d.h * d.w == 0 || d.c == 0 || d.k == 0) {
    // No pixels (or no channels): the gradients are zero.
    std::fill_n(dw, dw_size, 0.0f);
    std::fill_n(db, d.k, 0.0f);
    if (dx != nullptr) std::fill_n(dx, int64_t{d.n} * d.h * d.w * d.c, 0.0f);
    return;
  }
  PSTRAIN_CHECK(d.ksize % 2 == 1, "conv2d needs an odd kernel size");
  const int64_t x_img = int64_t{d.h} * d.w * d.c, y_img = int64_t{d.h} * d.w * d.k;
  const int64_t g_count = impl_->groups(d);
  // Group 0 writes dw and db; the others their own partial sums, added in group order below.
  std::vector<float>& pdw = impl_->partial_dw;
  std::vector<float>& pdb = impl_->partial_db;
  if (pdw.size() < static_cast<size_t>((g_count - 1) * dw_size)) {
    pdw.resize(static_cast<size_t>((g_count - 1) * dw_size));
  }
  if (pdb.size() < static_cast<size_t>((g_count - 1) * d.k)) {
    pdb.resize(static_cast<size_t>((g_count - 1) * d.k));
  }
  impl_->for_groups(d, [&](int64_t g, int64_t i0, ConvPrimitives& s, dnnl::stream& st) {
    s.bwd_w_x.bind(x + i0 * x_img);
    s.bwd_w_dy.bind(dy + i0 * y_img);
    s.bwd_w_dw.bind(g == 0 ? dw : pdw.data() + (g - 1) * dw_size);
    s.bwd_w_db.bind(g == 0 ? db : pdb.data() + (g - 1) * d.k);
    s.bwd_w_x.to_inner(st);
    s.bwd_w_dy.to_inner(st);
    s.bwd_w.execute(st, s.bwd_w_args);
    s.bwd_w_dw.to_user(st);
    s.bwd_w_db.to_user(st);
    if (dx != nullptr) {
      if (!s.dy_shared) {
        s.bwd_d_dy.bind(dy + i0 * y_img);
        s.bwd_d_dy.to_inner(st);
      }
      s.bwd_d_w.bind(w);
      s.bwd_d_dx.bind(dx + i0 * x_img);
      s.bwd_d_w.to_inner(st);
      s.bwd_d.execute(st, s.bwd_d_args);
      s.bwd_d_dx.to_user(st);
    }
    st.wait();
  });
  for (int64_t g = 1; g < g_count; ++g) {
    const float* p = pdw.data() + (g - 1) * dw_size;
    for (int64_t i = 0; i < dw_size; ++i) dw[i] += p[i];
    const float* q = pdb.data() + (g - 1) * d.k;
    for (int64_t i = 0; i < d.k; ++i) db[i] += q[i];
  }
}

int OnednnConv::cached_shapes() const {
  size_t most = 0;
  for (const WorkerCache& w : impl_->workers) most = std::max(most, w.shapes.size());
  return static_cast<int>(most);
}

std::string OnednnConv::version() {
  const dnnl_version_t* v = dnnl::version();
  return "oneDNN " + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
         std::to_string(v->patch) + (use_openmp() ? " (OpenMP threads)" : " (kernels' pool)");
}

}  // namespace pstrain::cpu
