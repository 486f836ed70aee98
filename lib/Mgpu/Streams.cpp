//===- Streams.cpp - mgpu streams and events ------------------------------===//
//
// gpu-async-region gives each function one stream (a `gpu.wait async`),
// and a `gpu.wait` on tokens of several streams becomes events recorded on
// them that one stream waits for. Streams are non-blocking, as MLIR's own
// wrappers make them, so that they do not serialise with the legacy
// default stream other code in the process may use; events skip timing,
// which they are not used for.
//
//===----------------------------------------------------------------------===//

#include "Wrappers.h"

#include "PagedAttn-c/Mgpu.h"

using namespace paged_attn;
using namespace paged_attn::cuda;

static CUstream asStream(mgpu_stream stream) {
  return reinterpret_cast<CUstream>(stream);
}
static CUevent_st *asEvent(mgpu_event event) {
  return reinterpret_cast<CUevent_st *>(event);
}

extern "C" mgpu_stream mgpuStreamCreate(void) {
  mgpu::ScopedContext context("mgpuStreamCreate");
  if (!context)
    return nullptr;
  CUstream stream = nullptr;
  if (!mgpu::check(
          context.driver(), "mgpuStreamCreate", "cuStreamCreate",
          context.driver().cuStreamCreate(&stream, CU_STREAM_NON_BLOCKING)))
    return nullptr;
  return reinterpret_cast<mgpu_stream>(stream);
}

extern "C" void mgpuStreamDestroy(mgpu_stream stream) {
  mgpu::ScopedContext context("mgpuStreamDestroy");
  if (context)
    mgpu::check(context.driver(), "mgpuStreamDestroy", "cuStreamDestroy",
                context.driver().cuStreamDestroy(asStream(stream)));
}

extern "C" void mgpuStreamSynchronize(mgpu_stream stream) {
  mgpu::ScopedContext context("mgpuStreamSynchronize");
  if (context)
    mgpu::check(context.driver(), "mgpuStreamSynchronize",
                "cuStreamSynchronize",
                context.driver().cuStreamSynchronize(asStream(stream)));
}

extern "C" void mgpuStreamWaitEvent(mgpu_stream stream, mgpu_event event) {
  const char *wrapper = "mgpuStreamWaitEvent";
  mgpu::ScopedContext context(wrapper);
  if (!context)
    return;
  const Driver &d = context.driver();
  if (mgpu::requireEntryPoint(d.cuStreamWaitEvent, wrapper,
                              "cuStreamWaitEvent"))
    mgpu::check(d, wrapper, "cuStreamWaitEvent",
                d.cuStreamWaitEvent(asStream(stream), asEvent(event),
                                    /*flags=*/0));
}

extern "C" mgpu_event mgpuEventCreate(void) {
  mgpu::ScopedContext context("mgpuEventCreate");
  if (!context)
    return nullptr;
  CUevent_st *event = nullptr;
  if (!mgpu::check(
          context.driver(), "mgpuEventCreate", "cuEventCreate",
          context.driver().cuEventCreate(&event, CU_EVENT_DISABLE_TIMING)))
    return nullptr;
  return reinterpret_cast<mgpu_event>(event);
}

extern "C" void mgpuEventDestroy(mgpu_event event) {
  mgpu::ScopedContext context("mgpuEventDestroy");
  if (context)
    mgpu::check(context.driver(), "mgpuEventDestroy", "cuEventDestroy",
                context.driver().cuEventDestroy(asEvent(event)));
}

extern "C" void mgpuEventSynchronize(mgpu_event event) {
  mgpu::ScopedContext context("mgpuEventSynchronize");
  if (context)
    mgpu::check(context.driver(), "mgpuEventSynchronize", "cuEventSynchronize",
                context.driver().cuEventSynchronize(asEvent(event)));
}

extern "C" void mgpuEventRecord(mgpu_event event, mgpu_stream stream) {
  mgpu::ScopedContext context("mgpuEventRecord");
  if (context)
    mgpu::check(
        context.driver(), "mgpuEventRecord", "cuEventRecord",
        context.driver().cuEventRecord(asEvent(event), asStream(stream)));
}
