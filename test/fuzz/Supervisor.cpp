//===- Supervisor.cpp - run fuzz inputs, survive their crashes ------------===//

#include "Supervisor.h"

#include "Generator.h"
#include "Harness.h"
#include "KnownFailures.h"

#include "llvm/ADT/SmallVector.h"
#include "llvm/ADT/StringRef.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/Regex.h"
#include "llvm/Support/Signals.h"
#include "llvm/Support/raw_ostream.h"

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <pthread.h>
#include <sstream>
#include <sys/mman.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace paged_attn_fuzz;
using Clock = std::chrono::steady_clock;

// LeakSanitizer's entry point, present when the sanitizer runtime is.
extern "C" __attribute__((weak)) void __lsan_do_leak_check();

namespace {

constexpr size_t kMaxInput = 1 << 20;
constexpr size_t kMaxKnown = 256;
constexpr size_t kMaxSignatures = 4096;

enum FailureKind : int { NoFailure = 0, HangFailure = 1, MemoryFailure = 2 };

/// What the supervisor and its workers share (an anonymous shared mapping,
/// zero-filled): counters, where the worker is, and its current input.
struct Shared {
  std::atomic<uint64_t> inputs, skipped, parsed, verified, withDecode,
      optionsRejected, cpuLowered, gpuLowered, ptxRun, ptxLowered, failuresNew,
      failuresKnown, crashes, hangs, findings;
  /// The input the worker runs, or runs next.
  std::atomic<uint64_t> next;
  std::atomic<uint64_t> heartbeat;
  std::atomic<int> stage, failure;
  std::atomic<uint64_t> knownHits[kMaxKnown];
  /// Hashes of the failures reported so far (0: a free slot).
  std::atomic<uint64_t> signatures[kMaxSignatures];
  std::atomic<uint64_t> inputSize;
  char input[kMaxInput];
};

Shared *createShared() {
  void *memory = mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (memory == MAP_FAILED)
    return nullptr;
  return new (memory) Shared();
}

uint64_t fnv1a(llvm::StringRef text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h ? h : 1;
}

/// True the first time `hash` is seen by any process of the run.
bool firstTime(Shared &s, uint64_t hash) {
  for (size_t i = 0; i < kMaxSignatures; ++i) {
    std::atomic<uint64_t> &slot = s.signatures[(hash + i) % kMaxSignatures];
    uint64_t expected = 0;
    if (slot.compare_exchange_strong(expected, hash))
      return true;
    if (expected == hash)
      return false;
  }
  return false;
}

/// `text` with numbers (but for a lone 0, often a bug of its own), quoted
/// types and kernel names' configs replaced, so that one bug on different
/// shapes is one failure.
std::string normalize(llvm::StringRef input) {
  static const llvm::Regex kernelName(
      "paged_attn_(decode|merge|check)_[A-Za-z0-9_]+");
  std::string text = input.str();
  while (kernelName.match(text))
    text = kernelName.sub("paged_attn_\\1", text);
  std::string out;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\'') {
      size_t end = text.find('\'', i + 1);
      if (end != llvm::StringRef::npos &&
          llvm::StringRef(text).slice(i, end).find_first_of("<\"") !=
              llvm::StringRef::npos) {
        out += "'T'";
        i = end;
        continue;
      }
    }
    bool digit = std::isdigit(static_cast<unsigned char>(text[i]));
    bool loneZero = text[i] == '0' &&
                    (i + 1 == text.size() ||
                     !std::isalnum(static_cast<unsigned char>(text[i + 1])));
    if (digit && !loneZero) {
      out += 'N';
      while (i + 1 < text.size() &&
             (std::isxdigit(static_cast<unsigned char>(text[i + 1])) ||
              text[i + 1] == 'x'))
        ++i;
    } else {
      out += text[i];
    }
  }
  return out;
}

/// The first line of a crash log that says what went wrong ("" if none).
std::string errorLine(llvm::StringRef log) {
  llvm::SmallVector<llvm::StringRef> lines;
  log.split(lines, '\n');
  for (llvm::StringRef line : lines) {
    llvm::StringRef l = line.trim();
    if (l.contains("LLVM ERROR:") || l.contains("Assertion") ||
        l.contains("terminate called") || l.contains("what():") ||
        l.contains("runtime error:") || l.contains("Sanitizer:"))
      return l.str();
  }
  return "";
}

/// The first frame of a crash log's stack outside the signal machinery
/// ("" if none).
std::string topFrame(llvm::StringRef log) {
  llvm::SmallVector<llvm::StringRef> lines;
  log.split(lines, '\n');
  for (llvm::StringRef line : lines) {
    llvm::StringRef l = line.trim();
    if (!l.starts_with("#") || !l.contains(" 0x"))
      continue;
    // "#3 0x00007f12 mlir::Foo::bar() (/path+0x12)"
    llvm::StringRef symbol = l.split(" 0x").second.split(' ').second;
    symbol = symbol.split(" (/").first.split(" /").first;
    symbol.consume_front("in "); // sanitizer reports: "#0 0x12 in f file"
    bool machinery =
        symbol.empty() || symbol.starts_with("0x") ||
        symbol.starts_with("(") || // no symbol: "(/lib/libc.so.6+0x3c050)"
        symbol.contains("llvm::sys::") || symbol.contains("SignalHandler") ||
        symbol.contains("__restore_rt") || symbol.starts_with("raise") ||
        symbol.starts_with("abort") || symbol.contains("libc.so") ||
        symbol.contains("pthread_kill") || symbol.contains("gsignal") ||
        symbol.contains("__pthread") || symbol.contains("__interceptor") ||
        symbol.starts_with("malloc") || symbol.starts_with("calloc") ||
        symbol.starts_with("realloc") || symbol.starts_with("operator new") ||
        symbol.contains("__sanitizer") || symbol.contains("__asan") ||
        symbol.contains("__ubsan");
    if (!machinery)
      return symbol.str();
  }
  return "";
}

/// The classification, dedup and artifacts of failures, in whichever
/// process sees them.
class Reporter {
public:
  Reporter(Shared &shared, const KnownFailures &known,
           const FuzzOptions &options)
      : shared(shared), known(known), options(options) {}

  /// `kind` and `what` head the report; `log` follows it.
  void report(const std::string &kind, Stage where, const std::string &what,
              const std::string &input, uint64_t index,
              const std::string &log) {
    std::string stage = stageName(where);
    std::string report = kind + " in " + stage + ": " + what + "\n" + log;
    ++(kind == "crash"                   ? shared.crashes
       : kind == "hang" || kind == "oom" ? shared.hangs
                                         : shared.findings);
    int entry = known.matchFailure(input, report);
    if (entry >= 0) {
      ++shared.failuresKnown;
      if (size_t(entry) < kMaxKnown)
        ++shared.knownHits[entry];
    } else {
      ++shared.failuresNew;
    }
    // One bug shows in both GPU stages.
    Stage group = where == Stage::PtxPipeline ? Stage::GpuPipeline : where;
    uint64_t hash = fnv1a(normalize(kind + stageName(group) + what));
    if (!firstTime(shared, hash))
      return;
    char name[32];
    std::snprintf(name, sizeof(name), "%s-%016llx", kind.c_str(),
                  static_cast<unsigned long long>(hash));
    std::string base = options.artifactDir + "/" + name;
    std::ofstream(base + ".mlir", std::ios::binary) << input;
    std::ofstream(base + ".txt")
        << report << "\ninput " << index << " of seed " << options.seed
        << "; reproduce with: paged-attn-fuzz --no-fork " << base << ".mlir\n";
    std::string verdict =
        entry >= 0 ? "known (" + known.text(entry) + ")" : "NEW";
    std::printf("paged-attn-fuzz: %s %s in %s: %s [input %llu -> %s.mlir]\n",
                verdict.c_str(), kind.c_str(), stage.c_str(), what.c_str(),
                static_cast<unsigned long long>(index), base.c_str());
    std::fflush(stdout);
  }

private:
  Shared &shared;
  const KnownFailures &known;
  const FuzzOptions &options;
};

//===----------------------------------------------------------------------===//
// Worker: inputs in process, a watchdog, a crash handler
//===----------------------------------------------------------------------===//

Shared *crashShared = nullptr;
char crashPath[4096];
bool crashWritesInput = false;

void writeAll(int fd, const char *data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n <= 0)
      return;
    data += n;
    size -= size_t(n);
  }
}

void writeString(int fd, const char *text) { writeAll(fd, text, strlen(text)); }

/// Runs on a fatal signal after LLVM prints the stack: says what happened
/// and, without a supervisor, leaves the input in a file. Async-signal-safe.
void onFatalSignal(void *) {
  Shared &s = *crashShared;
  int kind = s.failure.load();
  writeString(2, "paged-attn-fuzz: ");
  writeString(2, kind == HangFailure     ? "the input ran past its time limit"
                 : kind == MemoryFailure ? "the input ran past its memory limit"
                                         : "crash");
  writeString(2, " in ");
  writeString(2, stageName(Stage(s.stage.load())));
  if (crashWritesInput) {
    int fd = open(crashPath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      writeAll(fd, s.input, s.inputSize.load());
      close(fd);
      writeString(2, "; input written to ");
      writeString(2, crashPath);
    }
  }
  writeString(2, "\n");
}

/// Aborts the main thread (so the stack printed is the one that hangs) when
/// an input runs too long or grows too large.
class Watchdog {
public:
  Watchdog(Shared &shared, double timeoutSeconds, uint64_t rssLimitMB)
      : shared(shared), mainThread(pthread_self()),
        timeout(std::chrono::duration_cast<Clock::duration>(
            std::chrono::duration<double>(timeoutSeconds))),
        rssLimit(rssLimitMB << 20), thread([this] { loop(); }) {}
  ~Watchdog() {
    quit.store(true);
    thread.join();
  }

  void start() {
    startTime.store(Clock::now().time_since_epoch().count());
    active.store(true);
  }
  void stop() { active.store(false); }

private:
  static uint64_t residentBytes() {
    std::ifstream statm("/proc/self/statm");
    uint64_t pages = 0, resident = 0;
    statm >> pages >> resident;
    return resident * uint64_t(sysconf(_SC_PAGESIZE));
  }

  void fail(FailureKind kind) {
    shared.failure.store(kind);
    pthread_kill(mainThread, SIGABRT);
    for (;;)
      std::this_thread::sleep_for(std::chrono::seconds(1));
  }

  void loop() {
    while (!quit.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (!active.load())
        continue;
      Clock::duration elapsed =
          Clock::now().time_since_epoch() - Clock::duration(startTime.load());
      if (elapsed > timeout)
        fail(HangFailure);
      if (rssLimit && residentBytes() > rssLimit)
        fail(MemoryFailure);
    }
  }

  Shared &shared;
  pthread_t mainThread;
  Clock::duration timeout;
  uint64_t rssLimit;
  std::atomic<bool> active{false}, quit{false};
  std::atomic<Clock::rep> startTime{0};
  std::thread thread; // last: starts once the members above are set
};

struct Plan {
  uint64_t total; ///< corpus + generated; UINT64_MAX: until the deadline
  Clock::time_point deadline;
};

bool sampled(uint64_t seed, uint64_t index, double fraction) {
  uint64_t h = fnv1a(std::to_string(seed) + ":" + std::to_string(index));
  return double(h % 1000000) < fraction * 1e6;
}

/// Runs inputs from `shared.next` until the plan is done.
void workerLoop(Shared &s, const FuzzOptions &o, const KnownFailures &known,
                const Plan &plan, bool truncateLog) {
  Harness harness;
  harness.onStage = [&](Stage stage) { s.stage.store(int(stage)); };
  Watchdog watchdog(s, o.timeoutSeconds, o.rssLimitMB);
  Reporter reporter(s, known, o);
  for (uint64_t i = s.next.load(); i < plan.total; i = ++s.next) {
    if (Clock::now() > plan.deadline)
      break;
    std::string input =
        i < o.corpus.size() ? o.corpus[i] : generateInput(o.seed, i, o.corpus);
    if (input.size() > kMaxInput)
      input.resize(kMaxInput);
    ++s.heartbeat;
    if (!o.runKnown) {
      int entry = known.matchInput(input);
      if (entry >= 0) {
        ++s.skipped;
        if (size_t(entry) < kMaxKnown)
          ++s.knownHits[entry];
        continue;
      }
    }
    std::memcpy(s.input, input.data(), input.size());
    s.inputSize.store(input.size());
    s.failure.store(NoFailure);
    ++s.inputs;
    if (truncateLog) {
      // The log then holds what this input printed, if it crashes.
      if (ftruncate(2, 0) == 0)
        lseek(2, 0, SEEK_SET);
    }
    bool ptx = sampled(o.seed, i, o.ptxFraction);
    watchdog.start();
    Outcome out = harness.run(input, optionsOf(input), ptx);
    watchdog.stop();
    s.parsed += out.parsed;
    s.verified += out.verified;
    s.withDecode += out.verified && out.hasDecode;
    s.optionsRejected += out.optionsRejected;
    s.cpuLowered += out.cpuLowered;
    s.gpuLowered += out.gpuLowered;
    s.ptxRun += out.ranPtx;
    s.ptxLowered += out.ptxLowered;
    for (const Finding &finding : out.findings)
      reporter.report(finding.kind, finding.stage, finding.message, input, i,
                      "");
    if (o.verbose)
      std::printf("input %llu: %s%s%s%s%s%s %s\n",
                  static_cast<unsigned long long>(i),
                  !out.parsed ? "parse error" : "parsed",
                  out.parsed && !out.verified ? ", rejected" : "",
                  out.verified ? ", verified" : "",
                  out.cpuLowered ? ", cpu" : "", out.gpuLowered ? ", nvvm" : "",
                  out.ptxLowered ? ", ptx" : "", out.lastError.c_str());
  }
}

//===----------------------------------------------------------------------===//
// Supervisor
//===----------------------------------------------------------------------===//

std::string readFile(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void installCrashHandler(Shared &s, const char *argv0) {
  crashShared = &s;
  llvm::sys::PrintStackTraceOnErrorSignal(argv0);
  llvm::sys::AddSignalHandler(onFatalSignal, nullptr);
}

/// Forks workers until the plan is done; a worker that dies is a failure
/// of the input it was running.
void supervise(Shared &s, const FuzzOptions &o, const KnownFailures &known,
               const Plan &plan) {
  std::string logPath = o.artifactDir + "/worker.log";
  Reporter reporter(s, known, o);
  auto lastProgress = Clock::now();
  while (s.next.load() < plan.total && Clock::now() < plan.deadline) {
    uint64_t beatAtStart = s.heartbeat.load();
    std::fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("fork");
      return;
    }
    if (pid == 0) {
      int fd = open(logPath.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
      if (fd >= 0) {
        dup2(fd, 2);
        close(fd);
      }
      installCrashHandler(s, "paged-attn-fuzz");
      workerLoop(s, o, known, plan, /*truncateLog=*/fd >= 0);
      std::fflush(stdout);
      // _exit skips LeakSanitizer's check at exit: run it here, in
      // sanitizer builds (a leak then ends the worker with an error).
      if (__lsan_do_leak_check)
        __lsan_do_leak_check();
      _exit(0);
    }
    int status = 0;
    uint64_t beat = s.heartbeat.load();
    auto lastBeat = Clock::now();
    auto backstop = std::chrono::duration<double>(o.timeoutSeconds + 20);
    uint64_t reported = 0;
    while (waitpid(pid, &status, WNOHANG) == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (s.heartbeat.load() != beat) {
        beat = s.heartbeat.load();
        lastBeat = Clock::now();
      } else if (Clock::now() - lastBeat > backstop) {
        kill(pid, SIGKILL); // even the watchdog is stuck
      }
      if (Clock::now() - lastProgress > std::chrono::seconds(10) &&
          s.inputs.load() != reported) {
        lastProgress = Clock::now();
        reported = s.inputs.load();
        std::printf("paged-attn-fuzz: %llu inputs, %llu verified\n",
                    static_cast<unsigned long long>(s.inputs.load()),
                    static_cast<unsigned long long>(s.verified.load()));
        std::fflush(stdout);
      }
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
      return;
    if (s.heartbeat.load() == beatAtStart) {
      std::fprintf(stderr,
                   "paged-attn-fuzz: a worker died before its first "
                   "input:\n%s\n",
                   readFile(logPath).c_str());
      ++s.failuresNew;
      return;
    }
    int signal = WIFSIGNALED(status) ? WTERMSIG(status) : 0;
    int failure = s.failure.load();
    std::string kind = failure == HangFailure     ? "hang"
                       : failure == MemoryFailure ? "oom"
                                                  : "crash";
    std::string log = readFile(logPath);
    std::string what =
        failure == HangFailure
            ? "ran past " + std::to_string(int(o.timeoutSeconds)) + " s"
        : failure == MemoryFailure
            ? "grew past " + std::to_string(o.rssLimitMB) + " MiB"
            : errorLine(log);
    if (what.empty())
      what = signal ? std::string("signal ") + strsignal(signal) : "exit";
    if (std::string frame = topFrame(log); !frame.empty())
      what += " at " + frame;
    std::string input(s.input, s.inputSize.load());
    reporter.report(kind, Stage(s.stage.load()), what, input, s.next.load(),
                    log);
    s.stage.store(int(Stage::Idle));
    ++s.next;
  }
}

void printSummary(const Shared &s, const FuzzOptions &o,
                  const KnownFailures &known, double seconds) {
  auto n = [](const std::atomic<uint64_t> &v) {
    return static_cast<unsigned long long>(v.load());
  };
  uint64_t inputs = s.inputs.load();
  std::printf("paged-attn-fuzz: seed %llu: %llu inputs in %.1f s (%.1f/s), "
              "%zu from the corpus\n",
              static_cast<unsigned long long>(o.seed), n(s.inputs), seconds,
              seconds > 0 ? double(inputs) / seconds : 0.0, o.corpus.size());
  std::printf("  parsed %llu, verified %llu (%llu with a decode op), "
              "options rejected %llu\n",
              n(s.parsed), n(s.verified), n(s.withDecode),
              n(s.optionsRejected));
  std::printf("  lowered: paged-attn-to-cpu %llu, to NVVM %llu, to PTX %llu "
              "of %llu\n",
              n(s.cpuLowered), n(s.gpuLowered), n(s.ptxLowered), n(s.ptxRun));
  std::printf("  crashes %llu, hangs %llu (time or memory), findings %llu "
              "(invalid IR, silent failures, round trips, launches)\n",
              n(s.crashes), n(s.hangs), n(s.findings));
  std::printf("  failures: %llu new, %llu known; %llu inputs skipped as "
              "known\n",
              n(s.failuresNew), n(s.failuresKnown), n(s.skipped));
  for (size_t i = 0; i < known.size() && i < kMaxKnown; ++i)
    std::printf("  %6llu  %s%s\n", n(s.knownHits[i]), known.text(i).c_str(),
                s.knownHits[i].load() ? "" : "   (not seen in this run)");
  std::fflush(stdout);
}

} // namespace

int paged_attn_fuzz::runFuzzer(const FuzzOptions &o) {
  KnownFailures known;
  if (!o.knownFailuresPath.empty()) {
    std::string error;
    if (!known.load(o.knownFailuresPath, error)) {
      std::fprintf(stderr, "paged-attn-fuzz: %s\n", error.c_str());
      return 2;
    }
  }
  Shared *shared = createShared();
  if (!shared) {
    std::perror("paged-attn-fuzz: mmap");
    return 2;
  }
  llvm::sys::fs::create_directories(o.artifactDir);
  Plan plan;
  bool untilDeadline = o.generate == 0 && o.maxSeconds > 0;
  plan.total = untilDeadline ? UINT64_MAX : o.corpus.size() + o.generate;
  auto start = Clock::now();
  plan.deadline = o.maxSeconds > 0
                      ? start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(o.maxSeconds))
                      : Clock::time_point::max();
  if (o.fork) {
    supervise(*shared, o, known, plan);
  } else {
    std::snprintf(crashPath, sizeof(crashPath), "%s/crash-input.mlir",
                  o.artifactDir.c_str());
    crashWritesInput = true;
    installCrashHandler(*shared, "paged-attn-fuzz");
    workerLoop(*shared, o, known, plan, /*truncateLog=*/false);
  }
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  printSummary(*shared, o, known, seconds);
  return shared->failuresNew.load() ? 1 : 0;
}
