// cuemu.cpp: the runtime of the `emu` device (see cuemu.h).
//
// Why fibers with a hand-written switch: a measured block reduction (grid 1024 x block 256) took
// 55 ms with them, 535 ms with ucontext (a syscall per switch) and 3.5 s with one OS thread per
// CUDA thread (../shared/notes/emu.md). A fiber never moves between OS threads: compiled code
// caches thread-local addresses across barriers.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cuemu.h"

MTOSI_EMU_TLS uint3 threadIdx;
MTOSI_EMU_TLS uint3 blockIdx;
MTOSI_EMU_TLS uint3 blockDim;
MTOSI_EMU_TLS uint3 gridDim;
MTOSI_EMU_TLS unsigned char mtosi_dynamic_shared[MTOSI_EMU_DYNAMIC_SHARED_BYTES] __attribute__((aligned(16)));

// ---- context switch -----------------------------------------------------------------------------
// mtosi_emu_switch(save, to): pushes the callee-saved registers, stores the stack pointer in
// *save, loads `to` and pops the registers saved there. A new fiber's stack is laid out so that
// the final `ret` enters fiber_main.
#if defined(__x86_64__)
extern "C" void mtosi_emu_switch(void** save, void* to);
asm(R"(
    .text
    .globl mtosi_emu_switch
    .type mtosi_emu_switch, @function
mtosi_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size mtosi_emu_switch, .-mtosi_emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");
#elif defined(__aarch64__)
extern "C" void mtosi_emu_switch(void** save, void* to);
asm(R"(
    .text
    .globl mtosi_emu_switch
    .type mtosi_emu_switch, %function
mtosi_emu_switch:
    sub sp, sp, #176
    stp x19, x20, [sp, #0]
    stp x21, x22, [sp, #16]
    stp x23, x24, [sp, #32]
    stp x25, x26, [sp, #48]
    stp x27, x28, [sp, #64]
    stp x29, x30, [sp, #80]
    stp d8, d9, [sp, #96]
    stp d10, d11, [sp, #112]
    stp d12, d13, [sp, #128]
    stp d14, d15, [sp, #144]
    mov x9, sp
    str x9, [x0]
    mov sp, x1
    ldp x19, x20, [sp, #0]
    ldp x21, x22, [sp, #16]
    ldp x23, x24, [sp, #32]
    ldp x25, x26, [sp, #48]
    ldp x27, x28, [sp, #64]
    ldp x29, x30, [sp, #80]
    ldp d8, d9, [sp, #96]
    ldp d10, d11, [sp, #112]
    ldp d12, d13, [sp, #128]
    ldp d14, d15, [sp, #144]
    add sp, sp, #176
    ret
    .size mtosi_emu_switch, .-mtosi_emu_switch
    .section .note.GNU-stack,"",%progbits
    .text
)");
#else
#error "the emu device has a context switch for x86-64 and aarch64 only"
#endif

namespace {

// 128 KiB of stack per CUDA thread (reserved lazily), and a PROT_NONE page below it so that an
// overflow faults instead of corrupting the neighbouring fiber.
constexpr size_t kStackBytes = 128 * 1024;
constexpr size_t kMaxThreadsPerBlock = 1024;
constexpr int kWarpLanes = 32;

enum class FiberState { Runnable, AtBarrier, AtWarp, Exited };

struct Fiber {
    void* sp = nullptr;
    unsigned char* stack = nullptr;  // mapping: guard page + kStackBytes
    size_t mapping_bytes = 0;
    uint3 thread_idx{};
    unsigned linear = 0;
    FiberState state = FiberState::Runnable;
    const char* file = nullptr;  // where it waits
    int line = 0;
    int op = 0;
    unsigned mask = 0;
    uint64_t value = 0;
    int arg = 0;
    int width = 32;
    uint64_t result = 0;
};

struct WarpGroup {
    unsigned mask;
    int op;
    const char* file;
    int line;
    unsigned arrived;
};

struct Launch {
    void (*entry)(void**);
    void** args;
    unsigned grid[3];
    unsigned block[3];
    size_t shared_bytes;
    bool reverse;
    std::atomic<unsigned long long> next_block{0};
    std::atomic<bool> failed{false};
    std::mutex error_lock;
    std::string error;

    void fail(const std::string& message) {
        std::lock_guard<std::mutex> guard(error_lock);
        if (!failed.exchange(true)) error = message;
    }
};

struct Worker {
    std::vector<Fiber> fibers;
    unsigned threads = 0;  // fibers in use for this block
    void* scheduler_sp = nullptr;
    Fiber* current = nullptr;
    Launch* launch = nullptr;
    bool block_failed = false;
    std::vector<WarpGroup> pending[kMaxThreadsPerBlock / kWarpLanes];
    unsigned exited[kMaxThreadsPerBlock / kWarpLanes] = {};

    ~Worker() {
        for (Fiber& f : fibers)
            if (f.stack) munmap(f.stack, f.mapping_bytes);
    }
};

thread_local Worker worker;

std::string format(const char* fmt, ...) {
    char buffer[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buffer, sizeof buffer, fmt, ap);
    va_end(ap);
    return buffer;
}

std::string site(const char* file, int line) { return format("%s:%d", file ? file : "?", line); }

const char* collective_name(int op) {
    switch (op) {
        case MTOSI_EMU_SHFL_IDX: return "__shfl_sync";
        case MTOSI_EMU_SHFL_UP: return "__shfl_up_sync";
        case MTOSI_EMU_SHFL_DOWN: return "__shfl_down_sync";
        case MTOSI_EMU_SHFL_XOR: return "__shfl_xor_sync";
        case MTOSI_EMU_BALLOT: return "__ballot_sync";
        case MTOSI_EMU_ALL: return "__all_sync";
        case MTOSI_EMU_ANY: return "__any_sync";
        case MTOSI_EMU_SYNCWARP: return "__syncwarp";
    }
    return "warp collective";
}

void yield_to_scheduler() {
    Fiber* f = worker.current;
    mtosi_emu_switch(&f->sp, worker.scheduler_sp);
}

// Records the launch error and abandons the block: the failing fiber never resumes.
[[noreturn]] void fail_block(const std::string& message) {
    worker.block_failed = true;
    worker.launch->fail(message);
    yield_to_scheduler();
    abort();  // unreachable: a failed block's fibers are never resumed
}

std::string thread_name(const Fiber& f) {
    return format("thread (%u,%u,%u) of block (%u,%u,%u)", f.thread_idx.x, f.thread_idx.y, f.thread_idx.z,
                  blockIdx.x, blockIdx.y, blockIdx.z);
}

unsigned lanes_in_warp(unsigned warp) {
    unsigned first = warp * kWarpLanes;
    unsigned count = std::min<unsigned>(kWarpLanes, worker.threads - first);
    return count == 32 ? 0xffffffffu : ((1u << count) - 1u);
}

// Computes every arrived lane's result; the last lane to arrive calls this (one barrier, no
// double buffering). Fails the block when a lane reads a lane that is not taking part.
void complete_group(unsigned warp, const WarpGroup& group) {
    Fiber* lanes = &worker.fibers[warp * kWarpLanes];
    unsigned existing = lanes_in_warp(warp);
    unsigned ballot = 0;
    for (int lane = 0; lane < kWarpLanes; ++lane)
        if ((group.arrived >> lane) & 1u && lanes[lane].value != 0) ballot |= 1u << lane;
    for (int lane = 0; lane < kWarpLanes; ++lane) {
        if (!((group.arrived >> lane) & 1u)) continue;
        Fiber& f = lanes[lane];
        int width = f.width;
        int segment = lane & ~(width - 1);
        int source = lane;
        switch (group.op) {
            case MTOSI_EMU_SHFL_IDX: source = segment + (f.arg & (width - 1)); break;
            case MTOSI_EMU_SHFL_UP: source = lane - f.arg < segment ? lane : lane - f.arg; break;
            case MTOSI_EMU_SHFL_DOWN: source = lane + f.arg >= segment + width ? lane : lane + f.arg; break;
            case MTOSI_EMU_SHFL_XOR: {
                int x = lane ^ f.arg;
                source = (x & ~(width - 1)) != segment ? lane : x;
                break;
            }
            case MTOSI_EMU_BALLOT: f.result = ballot; continue;
            case MTOSI_EMU_ALL: f.result = ballot == group.arrived; continue;
            case MTOSI_EMU_ANY: f.result = ballot != 0; continue;
            case MTOSI_EMU_SYNCWARP: f.result = 0; continue;
        }
        if (!((group.arrived >> source) & 1u)) {
            const char* why = !((existing >> source) & 1u) ? "which is beyond the block"
                              : !((group.mask >> source) & 1u) ? "which is not in the mask"
                                                                : "which has exited";
            fail_block(format("%s at %s: lane %d of warp %u (%s) reads lane %d %s", collective_name(group.op),
                              site(group.file, group.line).c_str(), lane, warp, thread_name(f).c_str(), source,
                              why));
        }
        f.result = lanes[source].value;
    }
    for (int lane = 0; lane < kWarpLanes; ++lane)
        if ((group.arrived >> lane) & 1u && &lanes[lane] != worker.current) lanes[lane].state = FiberState::Runnable;
}

// The lanes a collective waits for: the mask, less lanes beyond the block and lanes that exited.
unsigned expected_lanes(unsigned warp, unsigned mask) { return mask & lanes_in_warp(warp) & ~worker.exited[warp]; }

void complete_ready_groups(unsigned warp) {
    auto& groups = worker.pending[warp];
    for (size_t i = 0; i < groups.size();) {
        unsigned expected = expected_lanes(warp, groups[i].mask);
        if (groups[i].arrived == expected) {
            WarpGroup group = groups[i];
            groups.erase(groups.begin() + i);
            complete_group(warp, group);
        } else {
            ++i;
        }
    }
}

void fiber_main() {
    worker.launch->entry(worker.launch->args);
    Fiber* f = worker.current;
    f->state = FiberState::Exited;
    unsigned warp = f->linear / kWarpLanes;
    worker.exited[warp] |= 1u << (f->linear % kWarpLanes);
    complete_ready_groups(warp);
    yield_to_scheduler();
    abort();  // unreachable: an exited fiber is never resumed
}

bool ensure_stacks(unsigned threads) {
    long page = sysconf(_SC_PAGESIZE);
    if (worker.fibers.size() < threads) worker.fibers.resize(threads);
    for (unsigned i = 0; i < threads; ++i) {
        Fiber& f = worker.fibers[i];
        if (f.stack) continue;
        size_t bytes = kStackBytes + page;
        void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (mapping == MAP_FAILED) return false;
        mprotect(mapping, page, PROT_NONE);
        f.stack = static_cast<unsigned char*>(mapping);
        f.mapping_bytes = bytes;
    }
    return true;
}

void prepare_fiber(Fiber& f) {
    uintptr_t top = reinterpret_cast<uintptr_t>(f.stack + f.mapping_bytes) & ~uintptr_t(15);
    void** sp = reinterpret_cast<void**>(top);
#if defined(__x86_64__)
    // [fake return address of fiber_main][ret -> fiber_main][rbp rbx r12 r13 r14 r15]
    *--sp = nullptr;
    *--sp = reinterpret_cast<void*>(&fiber_main);
    for (int i = 0; i < 6; ++i) *--sp = nullptr;
#else
    // 176-byte frame of x19..x30, d8..d15; x30 (the link register) -> fiber_main.
    sp -= 22;
    for (int i = 0; i < 22; ++i) sp[i] = nullptr;
    sp[11] = reinterpret_cast<void*>(&fiber_main);
#endif
    f.sp = sp;
    f.state = FiberState::Runnable;
}

void resume(Fiber& f) {
    worker.current = &f;
    threadIdx = f.thread_idx;
    mtosi_emu_switch(&worker.scheduler_sp, f.sp);
    worker.current = nullptr;
}

// All live threads are blocked: release a barrier that every live thread reached at one call
// site, or report why the block cannot go on.
bool release_or_report() {
    unsigned waiting = 0, exited = 0, at_warp = 0;
    const Fiber* first_barrier = nullptr;
    const Fiber* other_barrier = nullptr;
    const Fiber* first_warp = nullptr;
    for (unsigned i = 0; i < worker.threads; ++i) {
        const Fiber& f = worker.fibers[i];
        switch (f.state) {
            case FiberState::AtBarrier:
                ++waiting;
                if (!first_barrier) first_barrier = &f;
                else if (!other_barrier && (f.line != first_barrier->line || strcmp(f.file, first_barrier->file) != 0))
                    other_barrier = &f;
                break;
            case FiberState::Exited: ++exited; break;
            case FiberState::AtWarp:
                ++at_warp;
                if (!first_warp) first_warp = &f;
                break;
            case FiberState::Runnable: return true;
        }
    }
    if (at_warp) {
        std::string also = waiting ? format(", %u at __syncthreads (%s)", waiting,
                                            site(first_barrier->file, first_barrier->line).c_str())
                                   : std::string();
        worker.launch->fail(format("deadlock in block (%u,%u,%u): %u threads wait at %s (%s) for lanes that never "
                                   "arrive%s, %u exited",
                                   blockIdx.x, blockIdx.y, blockIdx.z, at_warp, collective_name(first_warp->op),
                                   site(first_warp->file, first_warp->line).c_str(), also.c_str(), exited));
        return false;
    }
    if (exited) {
        worker.launch->fail(format("__syncthreads() at %s is not reached by every thread of block (%u,%u,%u): %u "
                                   "waiting, %u exited (a barrier inside a branch that only some threads take)",
                                   site(first_barrier->file, first_barrier->line).c_str(), blockIdx.x, blockIdx.y,
                                   blockIdx.z, waiting, exited));
        return false;
    }
    if (other_barrier) {
        unsigned at_first = 0;
        for (unsigned i = 0; i < worker.threads; ++i) {
            const Fiber& f = worker.fibers[i];
            if (f.line == first_barrier->line && strcmp(f.file, first_barrier->file) == 0) ++at_first;
        }
        worker.launch->fail(format("divergent __syncthreads() in block (%u,%u,%u): %u threads at %s, %u at %s",
                                   blockIdx.x, blockIdx.y, blockIdx.z, at_first,
                                   site(first_barrier->file, first_barrier->line).c_str(), waiting - at_first,
                                   site(other_barrier->file, other_barrier->line).c_str()));
        return false;
    }
    // __syncthreads_count/and/or: every thread gets the reduction of all predicates.
    unsigned count = 0;
    for (unsigned i = 0; i < worker.threads; ++i) count += worker.fibers[i].value != 0;
    for (unsigned i = 0; i < worker.threads; ++i) {
        Fiber& f = worker.fibers[i];
        f.result = f.op == MTOSI_EMU_SYNC_COUNT ? count
                   : f.op == MTOSI_EMU_SYNC_AND ? (count == worker.threads)
                                                 : (count != 0);
        f.state = FiberState::Runnable;
    }
    return true;
}

bool run_block(Launch& launch, unsigned long long linear_block) {
    unsigned gx = launch.grid[0], gy = launch.grid[1];
    blockIdx = {unsigned(linear_block % gx), unsigned(linear_block / gx % gy), unsigned(linear_block / gx / gy)};
    worker.block_failed = false;
    for (auto& groups : worker.pending) groups.clear();
    memset(worker.exited, 0, sizeof worker.exited);
    // Shared memory is uninitialised on a GPU: fill it with NaN bytes so that reading it shows.
    memset(mtosi_dynamic_shared, 0xff, launch.shared_bytes);

    unsigned bx = launch.block[0], by = launch.block[1];
    for (unsigned i = 0; i < worker.threads; ++i) {
        Fiber& f = worker.fibers[i];
        f.linear = i;
        f.thread_idx = {i % bx, i / bx % by, i / bx / by};
        f.value = 0;
        f.op = 0;
        prepare_fiber(f);
    }
    for (;;) {
        bool ran = false;
        for (unsigned k = 0; k < worker.threads; ++k) {
            Fiber& f = worker.fibers[launch.reverse ? worker.threads - 1 - k : k];
            if (f.state != FiberState::Runnable) continue;
            resume(f);
            ran = true;
            if (worker.block_failed) return false;
        }
        if (ran) continue;
        bool all_exited = true;
        for (unsigned i = 0; i < worker.threads && all_exited; ++i)
            all_exited = worker.fibers[i].state == FiberState::Exited;
        if (all_exited) return true;
        if (!release_or_report()) return false;
    }
}

void run_blocks(Launch& launch) {
    unsigned threads = launch.block[0] * launch.block[1] * launch.block[2];
    if (!ensure_stacks(threads)) {
        launch.fail("cannot map fiber stacks");
        return;
    }
    worker.threads = threads;
    worker.launch = &launch;
    gridDim = {launch.grid[0], launch.grid[1], launch.grid[2]};
    blockDim = {launch.block[0], launch.block[1], launch.block[2]};
    unsigned long long blocks = (unsigned long long)launch.grid[0] * launch.grid[1] * launch.grid[2];
    for (;;) {
        if (launch.failed.load()) break;
        unsigned long long k = launch.next_block.fetch_add(1);
        if (k >= blocks) break;
        if (!run_block(launch, launch.reverse ? blocks - 1 - k : k)) break;
    }
    worker.launch = nullptr;
}

// Worker threads that live for the whole process: spawning threads per launch costs ~50 us and
// re-maps every fiber stack. One launch at a time uses the pool; a launch that finds it busy
// (tests launch from several threads) runs on its caller alone.
class Pool {
   public:
    static Pool& get() {
        static Pool* pool = new Pool();  // never destroyed: its threads block until the process ends
        return *pool;
    }

    // Runs `launch` on the caller plus `helpers` pool threads; false when the pool is busy.
    bool run(Launch& launch, unsigned helpers) {
        std::unique_lock<std::mutex> busy(busy_, std::try_to_lock);
        if (!busy.owns_lock()) return false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            while (threads_ < helpers) {
                std::thread([this] { serve(); }).detach();
                ++threads_;
            }
            job_ = &launch;
            wanted_ = helpers;
            running_ = 0;
            ++generation_;
        }
        start_.notify_all();
        run_blocks(launch);
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return joined_ == wanted_; });
        joined_ = 0;
        job_ = nullptr;
        return true;
    }

   private:
    void serve() {
        unsigned long long seen = 0;
        for (;;) {
            Launch* job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                start_.wait(lock, [&] { return generation_ != seen && running_ < wanted_; });
                seen = generation_;
                ++running_;
                job = job_;
            }
            run_blocks(*job);
            std::lock_guard<std::mutex> lock(mutex_);
            if (++joined_ == wanted_) done_.notify_all();
        }
    }

    std::mutex busy_;
    std::mutex mutex_;
    std::condition_variable start_, done_;
    unsigned threads_ = 0;
    Launch* job_ = nullptr;
    unsigned long long generation_ = 0;
    unsigned wanted_ = 0, running_ = 0, joined_ = 0;
};

}  // namespace

extern "C" {

void mtosi_emu_syncthreads(const char* file, int line) { mtosi_emu_syncthreads_reduce(MTOSI_EMU_SYNC_COUNT, 0, file, line); }

int mtosi_emu_syncthreads_reduce(int op, int predicate, const char* file, int line) {
    Fiber* f = worker.current;
    f->state = FiberState::AtBarrier;
    f->file = file;
    f->line = line;
    f->op = op;
    f->value = predicate;
    yield_to_scheduler();
    return (int)f->result;
}

uint64_t mtosi_emu_warp_collective(int op, unsigned mask, uint64_t value, int arg, int width, const char* file,
                                   int line) {
    Fiber* f = worker.current;
    unsigned warp = f->linear / kWarpLanes;
    unsigned lane = f->linear % kWarpLanes;
    if (width < 1 || width > 32 || (width & (width - 1)) != 0)
        fail_block(format("%s at %s: width %d is not a power of two up to 32", collective_name(op),
                          site(file, line).c_str(), width));
    if (!((mask >> lane) & 1u))
        fail_block(format("%s at %s: %s (lane %u) calls it with mask 0x%08x, which excludes itself",
                          collective_name(op), site(file, line).c_str(), thread_name(*f).c_str(), lane, mask));
    auto& groups = worker.pending[warp];
    WarpGroup* group = nullptr;
    for (WarpGroup& g : groups) {
        if (g.mask == mask) {
            group = &g;
        } else if (g.mask & mask) {
            fail_block(format("divergent warp collectives in warp %u: %s at %s with mask 0x%08x, while lane %u calls %s "
                              "at %s with mask 0x%08x",
                              warp, collective_name(g.op), site(g.file, g.line).c_str(), g.mask, lane,
                              collective_name(op), site(file, line).c_str(), mask));
        }
    }
    if (!group) {
        groups.push_back(WarpGroup{mask, op, file, line, 0});
        group = &groups.back();
    } else if (group->op != op) {
        fail_block(format("warp %u: lanes wait at %s (%s) while lane %u calls %s (%s) with the same mask", warp,
                          collective_name(group->op), site(group->file, group->line).c_str(), lane,
                          collective_name(op), site(file, line).c_str()));
    }
    f->op = op;
    f->file = file;
    f->line = line;
    f->value = value;
    f->arg = arg;
    f->width = width;
    group->arrived |= 1u << lane;
    if (group->arrived == expected_lanes(warp, mask)) {
        WarpGroup done = *group;
        groups.erase(groups.begin() + (group - groups.data()));
        complete_group(warp, done);
        return f->result;
    }
    f->state = FiberState::AtWarp;
    yield_to_scheduler();
    return f->result;
}

void mtosi_emu_assert_fail(const char* expr, const char* file, int line) {
    fail_block(format("assert(%s) failed at %s in %s", expr, site(file, line).c_str(),
                      thread_name(*worker.current).c_str()));
}

struct mtosi_emu_launch_params {
    unsigned grid[3];
    unsigned block[3];
    size_t shared_bytes;
    int reverse;
    unsigned workers;
};

// Runs every block of the grid. Returns 0, or 1 with a message in `error` (NUL-terminated).
int mtosi_emu_launch(void (*entry)(void**), void** args, const mtosi_emu_launch_params* params, char* error,
                     size_t error_capacity) {
    auto report = [&](const std::string& message) {
        snprintf(error, error_capacity, "%s", message.c_str());
        return 1;
    };
    unsigned long long threads = (unsigned long long)params->block[0] * params->block[1] * params->block[2];
    unsigned long long blocks = (unsigned long long)params->grid[0] * params->grid[1] * params->grid[2];
    if (threads == 0 || blocks == 0) return report("grid and block dimensions must all be at least 1");
    if (threads > kMaxThreadsPerBlock)
        return report(format("a block of %llu threads exceeds CUDA's limit of 1024", threads));
    if (params->block[2] > 64) return report("blockDim.z exceeds CUDA's limit of 64");
    if (params->grid[1] > 65535 || params->grid[2] > 65535)
        return report("gridDim.y and gridDim.z must be at most 65535");
    if (params->shared_bytes > MTOSI_EMU_DYNAMIC_SHARED_BYTES)
        return report(format("%zu bytes of dynamic shared memory exceed the 48 KiB that a launch gets by default",
                             params->shared_bytes));
    if (worker.launch) return report("a kernel launched another launch from inside a kernel");

    Launch launch;
    launch.entry = entry;
    launch.args = args;
    memcpy(launch.grid, params->grid, sizeof launch.grid);
    memcpy(launch.block, params->block, sizeof launch.block);
    launch.shared_bytes = params->shared_bytes;
    launch.reverse = params->reverse != 0;

    // Waking workers costs tens of microseconds: only worth it for launches with many threads.
    unsigned long long workers = std::min<unsigned long long>(std::max(1u, params->workers), blocks);
    if (threads * blocks < 16384) workers = 1;
    if (workers == 1 || !Pool::get().run(launch, (unsigned)workers - 1)) run_blocks(launch);
    if (launch.failed.load()) return report(launch.error);
    return 0;
}

}  // extern "C"
