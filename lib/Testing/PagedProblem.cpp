//===- PagedProblem.cpp - random paged decode inputs on the GPU -----------===//

#include "PagedAttn/Testing/PagedProblem.h"

#include "../Runtime/CudaDriver.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <numeric>

using namespace paged_attn;
using namespace paged_attn::testing;
using namespace paged_attn::cuda;

static Status driver(const Driver **d) {
  std::string why;
  *d = getDriver(&why);
  return *d ? Status::ok() : Status(StatusCode::NoDriver, why);
}

static Status cudaStatus(const Driver &d, CUresult r, const char *what) {
  if (r == CUDA_SUCCESS)
    return Status::ok();
  return Status(StatusCode::CudaError,
                std::string(what) + ": " + describe(d, r));
}

//===----------------------------------------------------------------------===//
// Driver helpers
//===----------------------------------------------------------------------===//

Status testing::initDevice() {
  const Driver *d;
  Status s = driver(&d);
  if (!s)
    return s;
  CUcontext ctx = nullptr;
  d->cuCtxGetCurrent(&ctx);
  if (ctx)
    return Status::ok();
  int count = 0;
  if (d->cuDeviceGetCount(&count) != CUDA_SUCCESS || count == 0)
    return Status(StatusCode::NoDriver, "no CUDA device found");
  CUdevice dev;
  CUresult r = d->cuDeviceGet(&dev, 0);
  if (r == CUDA_SUCCESS)
    r = d->cuDevicePrimaryCtxRetain(&ctx, dev);
  if (r == CUDA_SUCCESS)
    r = d->cuCtxSetCurrent(ctx);
  return cudaStatus(*d, r, "initialising device 0");
}

Status testing::synchronize() {
  const Driver *d;
  Status s = driver(&d);
  return s ? cudaStatus(*d, d->cuCtxSynchronize(), "cuCtxSynchronize") : s;
}

Status testing::createStream(void **stream) {
  const Driver *d;
  Status s = driver(&d);
  if (!s)
    return s;
  CUstream st = nullptr;
  s = cudaStatus(*d, d->cuStreamCreate(&st, /*CU_STREAM_NON_BLOCKING=*/1),
                 "cuStreamCreate");
  *stream = st;
  return s;
}

Status testing::destroyStream(void *stream) {
  const Driver *d;
  Status s = driver(&d);
  return s ? cudaStatus(*d, d->cuStreamDestroy(static_cast<CUstream>(stream)),
                        "cuStreamDestroy")
           : s;
}

Status testing::synchronizeStream(void *stream) {
  const Driver *d;
  Status s = driver(&d);
  return s ? cudaStatus(*d,
                        d->cuStreamSynchronize(static_cast<CUstream>(stream)),
                        "cuStreamSynchronize")
           : s;
}

Status testing::beginCapture(void *stream) {
  const Driver *d;
  Status s = driver(&d);
  // CU_STREAM_CAPTURE_MODE_THREAD_LOCAL = 1
  return s ? cudaStatus(
                 *d, d->cuStreamBeginCapture(static_cast<CUstream>(stream), 1),
                 "cuStreamBeginCapture")
           : s;
}

Status
testing::endCaptureAndLaunch(void *stream, int replays,
                             const std::function<Status(int)> &afterReplay) {
  const Driver *d;
  Status s = driver(&d);
  if (!s)
    return s;
  CUstream st = static_cast<CUstream>(stream);
  struct CUgraph_st *graph = nullptr;
  struct CUgraphExec_st *exec = nullptr;
  if (!(s = cudaStatus(*d, d->cuStreamEndCapture(st, &graph),
                       "cuStreamEndCapture")))
    return s;
  s = cudaStatus(*d, d->cuGraphInstantiate(&exec, graph, 0),
                 "cuGraphInstantiate");
  for (int i = 0; s && i < replays; ++i) {
    s = cudaStatus(*d, d->cuGraphLaunch(exec, st), "cuGraphLaunch");
    if (s)
      s = cudaStatus(*d, d->cuStreamSynchronize(st), "cuStreamSynchronize");
    if (s && afterReplay)
      s = afterReplay(i);
  }
  if (exec)
    d->cuGraphExecDestroy(exec);
  d->cuGraphDestroy(graph);
  return s;
}

static cuda::CUevent_st *event(void *e) {
  return static_cast<cuda::CUevent_st *>(e);
}

EventTimer::EventTimer() {
  const Driver *d;
  if (driver(&d)) {
    d->cuEventCreate(reinterpret_cast<cuda::CUevent_st **>(&start_), 0);
    d->cuEventCreate(reinterpret_cast<cuda::CUevent_st **>(&end_), 0);
  }
}

EventTimer::~EventTimer() {
  const Driver *d;
  if (driver(&d)) {
    if (start_)
      d->cuEventDestroy(event(start_));
    if (end_)
      d->cuEventDestroy(event(end_));
  }
}

Status EventTimer::record(void *stream, bool end) {
  const Driver *d;
  Status s = driver(&d);
  return s ? cudaStatus(*d,
                        d->cuEventRecord(event(end ? end_ : start_),
                                         static_cast<CUstream>(stream)),
                        "cuEventRecord")
           : s;
}

Status EventTimer::elapsed(float *ms) {
  const Driver *d;
  Status s = driver(&d);
  if (!s)
    return s;
  if (!(s = cudaStatus(*d, d->cuEventSynchronize(event(end_)),
                       "cuEventSynchronize")))
    return s;
  return cudaStatus(*d, d->cuEventElapsedTime(ms, event(start_), event(end_)),
                    "cuEventElapsedTime");
}

//===----------------------------------------------------------------------===//
// DeviceBuffer
//===----------------------------------------------------------------------===//

DeviceBuffer::~DeviceBuffer() {
  const Driver *d;
  if (ptr_ && driver(&d))
    d->cuMemFree(ptr_);
}

DeviceBuffer::DeviceBuffer(DeviceBuffer &&other) noexcept
    : ptr_(other.ptr_), bytes_(other.bytes_) {
  other.ptr_ = 0;
  other.bytes_ = 0;
}

DeviceBuffer &DeviceBuffer::operator=(DeviceBuffer &&other) noexcept {
  std::swap(ptr_, other.ptr_);
  std::swap(bytes_, other.bytes_);
  return *this;
}

Status DeviceBuffer::allocate(size_t bytes) {
  const Driver *d;
  Status s = driver(&d);
  if (!s)
    return s;
  if (ptr_)
    d->cuMemFree(ptr_);
  ptr_ = 0;
  bytes_ = 0;
  if (bytes == 0)
    bytes = 16; // keep a valid, aligned pointer for empty tensors
  if (!(s = cudaStatus(*d, d->cuMemAlloc(&ptr_, bytes), "cuMemAlloc")))
    return s;
  bytes_ = bytes;
  return Status::ok();
}

Status DeviceBuffer::upload(const void *data, size_t bytes, size_t offset) {
  const Driver *d;
  Status s = driver(&d);
  if (!s || bytes == 0)
    return s;
  return cudaStatus(*d, d->cuMemcpyHtoD(ptr_ + offset, data, bytes),
                    "cuMemcpyHtoD");
}

Status DeviceBuffer::download(void *data, size_t bytes, size_t offset) const {
  const Driver *d;
  Status s = driver(&d);
  if (!s || bytes == 0)
    return s;
  return cudaStatus(*d, d->cuMemcpyDtoH(data, ptr_ + offset, bytes),
                    "cuMemcpyDtoH");
}

Status DeviceBuffer::fill(uint8_t byte) {
  const Driver *d;
  Status s = driver(&d);
  if (!s)
    return s;
  s = cudaStatus(*d, d->cuMemsetD8Async(ptr_, byte, bytes_, nullptr),
                 "cuMemsetD8Async");
  return s ? cudaStatus(*d, d->cuStreamSynchronize(nullptr),
                        "cuStreamSynchronize")
           : s;
}

//===----------------------------------------------------------------------===//
// Problem
//===----------------------------------------------------------------------===//

Status Problem::create(const ProblemShape &shape) {
  shape_ = shape;
  const KernelConfig &c = shape.config;
  std::vector<int32_t> lens = shape.seqLens;
  if (lens.empty()) {
    std::mt19937_64 rng(shape.seed ^ 0x9e3779b97f4a7c15ull);
    std::uniform_int_distribution<int64_t> len(shape.minSeqLen,
                                               shape.maxSeqLen);
    for (int64_t b = 0; b < shape.batch; ++b)
      lens.push_back(static_cast<int32_t>(len(rng)));
  }
  shape_.batch = static_cast<int64_t>(lens.size());
  RandomProblemOptions options;
  options.numHeads = c.numHeads;
  options.numKVHeads = c.numKVHeads;
  options.headDim = c.headDim;
  options.pageSize = c.pageSize;
  options.hnd = c.layout == Layout::HND;
  options.seqLens = lens;
  options.sparePages = shape.sparePages;
  options.sharePrefixPage = shape.sharePrefixPage;
  options.seed = shape.seed;
  options.variants = c.variants;
  options.window = shape.window;
  options.softCap = shape.softCap;
  options.queryLen = c.queryLen;
  ref_ = makeRandomProblem(options);

  Status s;
  auto upload = [](DeviceBuffer &buffer, const void *data, size_t bytes) {
    Status st = buffer.allocate(bytes);
    return st ? buffer.upload(data, bytes) : st;
  };
  auto put = [&](DeviceBuffer &buffer, std::vector<double> &values) {
    std::vector<uint8_t> bytes = roundToDType(c.dtype, values);
    return upload(buffer, bytes.data(), bytes.size());
  };
  if (!(s = put(q_, ref_.q)))
    return s;
  if (c.kvQuant) {
    // The codes are the caches; the reference's caches become the values
    // they stand for, so that it computes the quantised decode exactly.
    QuantizedCaches quantized =
        quantizeCaches(ref_, *c.kvQuant, shape.seed ^ 0x5851f42d4c957f2dull);
    if (!(s = upload(k_, quantized.k.data(), quantized.k.size())) ||
        !(s = upload(v_, quantized.v.data(), quantized.v.size())) ||
        !(s = upload(kScale_, quantized.kScale.data(),
                     quantized.kScale.size() * 4)) ||
        !(s = upload(vScale_, quantized.vScale.data(),
                     quantized.vScale.size() * 4)))
      return s;
  } else if (!(s = put(k_, ref_.kCache)) || !(s = put(v_, ref_.vCache))) {
    return s;
  }
  if (!(s = blockTable_.allocate(ref_.blockTable.size() * 4)) ||
      !(s = blockTable_.upload(ref_.blockTable.data(),
                               ref_.blockTable.size() * 4)) ||
      !(s = seqLens_.allocate(ref_.seqLens.size() * 4)) ||
      !(s = seqLens_.upload(ref_.seqLens.data(), ref_.seqLens.size() * 4)) ||
      !(s = out_.allocate(ref_.q.size() * dtypeBytes(c.dtype))))
    return s;
  auto uploadF32 = [&](DeviceBuffer &buffer,
                       const std::vector<double> &values) {
    std::vector<float> f(values.begin(), values.end());
    Status st = buffer.allocate(f.size() * 4);
    return st ? buffer.upload(f.data(), f.size() * 4) : st;
  };
  if (c.variants.alibi && !(s = uploadF32(alibiSlopes_, ref_.alibiSlopes)))
    return s;
  if (c.variants.sinks && !(s = uploadF32(sinks_, ref_.sinks)))
    return s;
  if (c.variants.lse &&
      !(s = lse_.allocate(size_t(ref_.batch) * c.partialRows() * 4)))
    return s;
  if (c.variants.treeMask &&
      (!(s = treeMask_.allocate(ref_.treeMask.size())) ||
       !(s = treeMask_.upload(ref_.treeMask.data(), ref_.treeMask.size()))))
    return s;
  return Status::ok();
}

DecodeParams Problem::params() const {
  const KernelConfig &c = shape_.config;
  DecodeParams p;
  // A multi-token decode's q, out and lse have the new queries as dim 1.
  int64_t l = c.queryLen;
  bool perQuery = c.hasQueryDim();
  p.q = perQuery ? Tensor::contiguous(q_.data(), c.dtype,
                                      {ref_.batch, l, c.numHeads, c.headDim})
                 : Tensor::contiguous(q_.data(), c.dtype,
                                      {ref_.batch, c.numHeads, c.headDim});
  std::array<int64_t, 4> cache = c.cacheShape(ref_.numPages);
  p.kCache = Tensor::contiguous(k_.data(), c.cacheDType(),
                                {cache[0], cache[1], cache[2], cache[3]});
  p.vCache = Tensor::contiguous(v_.data(), c.cacheDType(),
                                {cache[0], cache[1], cache[2], cache[3]});
  p.blockTable = Tensor::contiguous(blockTable_.data(), DType::I32,
                                    {ref_.batch, ref_.maxPages});
  p.seqLens = Tensor::contiguous(seqLens_.data(), DType::I32, {ref_.batch});
  p.out = p.q;
  p.out.data = out_.data();
  p.maxSeqLen = maxSeqLen();
  p.workspace = workspace_.size() ? workspace_.data() : nullptr;
  p.workspaceBytes = workspace_.size();
  const DecodeVariants &v = c.variants;
  if (v.window)
    p.window = ref_.window;
  if (v.softCap)
    p.softCap = float(ref_.softCap);
  if (v.alibi)
    p.alibiSlopes =
        Tensor::contiguous(alibiSlopes_.data(), DType::F32, {c.numHeads});
  if (v.sinks)
    p.sinks = Tensor::contiguous(sinks_.data(), DType::F32, {c.numHeads});
  if (v.lse)
    p.lse = perQuery ? Tensor::contiguous(lse_.data(), DType::F32,
                                          {ref_.batch, l, c.numHeads})
                     : Tensor::contiguous(lse_.data(), DType::F32,
                                          {ref_.batch, c.numHeads});
  if (v.treeMask)
    p.treeMask =
        Tensor::contiguous(treeMask_.data(), DType::I8, {ref_.batch, l, l});
  if (c.kvQuant) {
    // Contiguous views of the scales' shape: rank 0, 1 or 3.
    std::vector<int64_t> shape = c.kvScaleShape(ref_.numPages);
    for (auto [t, buffer] :
         {std::pair{&p.kScale, &kScale_}, std::pair{&p.vScale, &vScale_}}) {
      *t = Tensor();
      t->data = buffer->data();
      t->dtype = DType::F32;
      t->rank = int(shape.size());
      int64_t stride = 1;
      for (int d = t->rank - 1; d >= 0; --d) {
        t->sizes[d] = shape[d];
        t->strides[d] = stride;
        stride *= shape[d];
      }
    }
  }
  return p;
}

int64_t Problem::maxSeqLen() const {
  int64_t m = 0;
  for (int32_t l : ref_.seqLens)
    m = std::max<int64_t>(m, l);
  return m;
}

double Problem::bytesMoved() const {
  const KernelConfig &c = shape_.config;
  double tokens = 0, pages = 0;
  for (int32_t l : ref_.seqLens) {
    tokens += l;
    pages += (l + c.pageSize - 1) / c.pageSize;
  }
  double elem = double(dtypeBytes(c.dtype));
  double cacheElem = double(dtypeBytes(c.cacheDType()));
  // Scales: K's and V's, one each, one per KV head, or one per token read.
  double scales = 0;
  if (c.kvQuant)
    switch (c.kvQuant->scale) {
    case KVScaleKind::Tensor:
      scales = 2.0 * 4;
      break;
    case KVScaleKind::Head:
      scales = 2.0 * 4 * double(c.numKVHeads);
      break;
    case KVScaleKind::Token:
      scales = 2.0 * 4 * tokens * double(c.numKVHeads);
      break;
    }
  return 2.0 * tokens * c.numKVHeads * c.headDim * cacheElem + scales +
         2.0 * double(ref_.q.size()) * elem + pages * 4 + ref_.batch * 4;
}

Status Problem::prepareWorkspace(const Decoder &decoder, int numSplits) {
  size_t bytes = 0;
  Status s = numSplits == 0
                 ? decoder.maxWorkspaceSize(ref_.batch, maxSeqLen(), &bytes)
                 : decoder.workspaceSize(ref_.batch, numSplits, &bytes);
  if (!s)
    return s;
  if (bytes == 0)
    return Status::ok();
  return workspace_.allocate(bytes);
}

// NaN in all dtypes.
Status Problem::poisonOutput() {
  Status s = out_.fill(0xff);
  return s && lse_.size() ? lse_.fill(0xff) : s;
}

Status Problem::readLse(std::vector<double> *lse) const {
  std::vector<float> values(lse_.size() / 4);
  Status s = lse_.download(values.data(), lse_.size());
  if (s)
    lse->assign(values.begin(), values.end());
  return s;
}

Status Problem::readOutput(std::vector<double> *out) const {
  const KernelConfig &c = shape_.config;
  size_t n = ref_.q.size();
  std::vector<uint8_t> bytes(n * dtypeBytes(c.dtype));
  Status s = out_.download(bytes.data(), bytes.size());
  if (s)
    *out = widenFromDType(c.dtype, bytes.data(), n);
  return s;
}

double testing::toleranceFor(DType dtype) {
  // Inputs are rounded to the dtype before the reference sees them, so the
  // error is accumulation order, ex2.approx and the output rounding:
  // bf16 keeps 8 mantissa bits (2^-9 relative), f16 11, f32 24. fp8 caches
  // keep q's limit: the reference reads the values their codes stand for,
  // and a kernel that rounds code x scale to q's dtype errs no more than
  // rounded 16-bit caches do.
  switch (dtype) {
  case DType::BF16:
    return 1e-2;
  case DType::F16:
    return 2e-3;
  default:
    return 1e-4;
  }
}

Status testing::runAndCheck(const Decoder &decoder, Problem &problem,
                            const DecodeParams &params, void *stream,
                            CheckResult *result) {
  Status s = problem.poisonOutput();
  if (!s)
    return s;
  if (!(s = decoder.decode(params, stream)))
    return s;
  if (!(s = synchronizeStream(stream)))
    return s;
  std::vector<double> out;
  if (!(s = problem.readOutput(&out)))
    return s;
  ReferenceProblem ref = problem.reference();
  if (params.scale > 0)
    ref.scale = params.scale;
  std::vector<double> expectedLse;
  std::vector<double> expected = referenceDecode(ref, &expectedLse);
  result->relError = relativeError(out, expected);
  result->maxAbsError = maxAbsError(out, expected);
  result->lseError = 0;
  if (problem.shape().config.variants.lse) {
    std::vector<double> lse;
    if (!(s = problem.readLse(&lse)))
      return s;
    for (size_t i = 0; i < lse.size(); ++i) {
      bool bothEmpty = std::isinf(lse[i]) && lse[i] < 0 &&
                       std::isinf(expectedLse[i]) && expectedLse[i] < 0;
      double error = bothEmpty ? 0 : std::fabs(lse[i] - expectedLse[i]);
      if (!(error <= result->lseError)) // NaN and inf count as the largest
        result->lseError = std::isfinite(error)
                               ? error
                               : std::numeric_limits<double>::infinity();
    }
  }
  result->passed =
      result->relError <= toleranceFor(problem.shape().config.dtype) &&
      result->lseError <= kLseTolerance;
  return Status::ok();
}
