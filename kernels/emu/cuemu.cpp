// cuemu.cpp: the runtime of the `emu` device (see cuemu.h).
//
// Why fibers with a hand-written switch: a measured block reduction (grid 1024 x block 256) took
// 55 ms with them, 535 ms with ucontext (a syscall per switch) and 3.5 s with one OS thread per
// CUDA thread (../shared/notes/emu.md). A fiber never moves between OS threads: compiled code
// caches thread-local addresses across barriers.
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
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

enum class FiberState { Runnable, AtBarrier, AtGridBarrier, AtWarp, Exited };

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

// A buffer argument of a launch, for naming the parameter an out-of-bounds access hit.
struct mtosi_emu_buffer_arg {
    const unsigned char* data;  // NULL for scalar arguments
    size_t bytes;
    const char* description;  // "parameter 1 `out` (100 elements of float)"
};

struct Launch {
    void (*entry)(void**);
    void** args;
    const mtosi_emu_buffer_arg* buffers = nullptr;
    unsigned buffer_count = 0;
    std::atomic<bool> out_of_bounds{false};
    unsigned grid[3];
    unsigned block[3];
    size_t shared_bytes;
    bool reverse;
    std::atomic<unsigned long long> next_block{0};
    std::atomic<bool> failed{false};
    std::mutex error_lock;
    std::string error;
    // A cooperative launch runs every block at once, one per OS thread, so that a grid barrier
    // (mtosi_emu_grid_sync) can hold a block until all the others have arrived.
    bool cooperative = false;
    unsigned long long blocks = 0;
    std::mutex grid_mutex;
    std::condition_variable grid_arrival;
    unsigned long long grid_arrived = 0, grid_generation = 0, grid_blocks_exited = 0;
    const char* grid_file = nullptr;  // the barrier the waiting blocks are at
    int grid_line = 0;

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
    // Static __shared__ variables seen, with the serial of the block that last poisoned each.
    unsigned long long block_serial = 0;
    std::vector<std::pair<void*, unsigned long long>> shared_seen;

    ~Worker() {
        for (Fiber& f : fibers)
            if (f.stack) munmap(f.stack, f.mapping_bytes);
    }
};

thread_local Worker worker;
// File-scope static __shared__ variables (MTOSI_EMU_FILE_SHARED), registered while the program
// starts; `address` gives the calling OS thread's copy.
struct FileSharedVariable {
    void* (*address)();
    size_t bytes;
};
std::vector<FileSharedVariable>& file_shared() {
    static std::vector<FileSharedVariable>* variables = new std::vector<FileSharedVariable>();
    return *variables;
}

// The worker running a launch on this OS thread, for the fault handler: a trivially constructed
// thread-local, so that reading it in a signal handler never runs a constructor.
__thread Worker* active_worker = nullptr;

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

// Every thread of this block waits at a grid barrier: wait (as an OS thread) until every block of
// the grid has arrived, then let the block go on. A block that finished, or a thread that
// exited or waits elsewhere, means the barrier can never complete on a GPU: an error, not a hang.
bool release_grid_barrier(unsigned at_grid, unsigned waiting, unsigned exited, const Fiber& first) {
    Launch& launch = *worker.launch;
    std::string where = site(first.file, first.line);
    if (waiting || exited) {
        launch.fail(format("grid barrier at %s is not reached by every thread of block (%u,%u,%u): %u there, %u at "
                           "__syncthreads, %u exited",
                           where.c_str(), blockIdx.x, blockIdx.y, blockIdx.z, at_grid, waiting, exited));
        return false;
    }
    {
        std::unique_lock<std::mutex> lock(launch.grid_mutex);
        if (launch.grid_blocks_exited) {
            launch.fail(format("grid barrier at %s: block (%u,%u,%u) waits there, but %llu blocks of the grid have "
                               "already exited without reaching it",
                               where.c_str(), blockIdx.x, blockIdx.y, blockIdx.z, launch.grid_blocks_exited));
            return false;
        }
        launch.grid_file = first.file;
        launch.grid_line = first.line;
        unsigned long long generation = launch.grid_generation;
        if (++launch.grid_arrived == launch.blocks) {
            launch.grid_arrived = 0;
            ++launch.grid_generation;
            launch.grid_arrival.notify_all();
        } else {
            // A failure elsewhere (a fault, a block that exits) ends the wait: poll for it.
            while (launch.grid_generation == generation && !launch.failed.load())
                launch.grid_arrival.wait_for(lock, std::chrono::milliseconds(10));
            if (launch.grid_generation == generation) return false;
        }
    }
    for (unsigned i = 0; i < worker.threads; ++i) worker.fibers[i].state = FiberState::Runnable;
    return true;
}

// A block of a cooperative launch has finished: blocks still waiting at a grid barrier would
// wait for it forever.
void grid_block_exited(Launch& launch) {
    std::lock_guard<std::mutex> lock(launch.grid_mutex);
    ++launch.grid_blocks_exited;
    if (launch.grid_arrived)
        launch.fail(format("grid barrier at %s: %llu blocks wait there, but block (%u,%u,%u) exited without reaching it",
                           site(launch.grid_file, launch.grid_line).c_str(), launch.grid_arrived, blockIdx.x,
                           blockIdx.y, blockIdx.z));
}

// All live threads are blocked: release a barrier that every live thread reached at one call
// site, or report why the block cannot go on.
bool release_or_report() {
    unsigned waiting = 0, exited = 0, at_warp = 0, at_grid = 0;
    const Fiber* first_grid = nullptr;
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
            case FiberState::AtGridBarrier:
                ++at_grid;
                if (!first_grid) first_grid = &f;
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
    if (at_grid) return release_grid_barrier(at_grid, waiting, exited, *first_grid);
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

// ---- out-of-bounds accesses --------------------------------------------------------------------
// Every emu buffer lies against a PROT_NONE page (mtosi_emu_buffer_map): an access past its end
// (forward thread order) or before its start (reverse order) faults at once. The handler turns a
// fault inside a kernel fiber into a launch error naming the parameter, and abandons the block
// as fail_block does; any other fault goes to the handler that was there before.
struct sigaction previous_segv, previous_bus;

std::string describe_fault(const Worker& w, uintptr_t address, bool write) {
    const Launch& launch = *w.launch;
    const char* access = write ? "wrote" : "read";
    for (unsigned i = 0; i < launch.buffer_count; ++i) {
        const mtosi_emu_buffer_arg& b = launch.buffers[i];
        if (!b.data) continue;
        uintptr_t start = reinterpret_cast<uintptr_t>(b.data), end = start + b.bytes;
        long page = sysconf(_SC_PAGESIZE);
        if (address >= end && address < end + (uintptr_t)page)
            return format("%s: %s after its end (at byte %zu past the end)", b.description, access,
                          (size_t)(address - end));
        if (address < start && address + (uintptr_t)page >= start)
            return format("%s: %s before its start (%zu bytes before)", b.description, access,
                          (size_t)(start - address));
    }
    for (const Fiber& f : w.fibers) {
        uintptr_t guard = reinterpret_cast<uintptr_t>(f.stack);
        if (f.stack && address >= guard && address < guard + (uintptr_t)sysconf(_SC_PAGESIZE))
            return format("the stack of a thread overflowed its %zu KiB (%s at %p)", kStackBytes / 1024, access,
                          (void*)address);
    }
    return format("%s at %p, which is outside every buffer of the launch", access, (void*)address);
}

void chain_fault(int sig, siginfo_t* info, void* context) {
    const struct sigaction& previous = sig == SIGSEGV ? previous_segv : previous_bus;
    if (previous.sa_flags & SA_SIGINFO) {
        previous.sa_sigaction(sig, info, context);
    } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
        previous.sa_handler(sig);
    } else {
        // Returning re-runs the faulting instruction, which now gets the default action.
        signal(sig, SIG_DFL);
    }
}

void on_fault(int sig, siginfo_t* info, void* context) {
    Worker* w = active_worker;
    if (!w || !w->current || !w->launch) {
        chain_fault(sig, info, context);
        return;
    }
    bool write = false;
#if defined(__x86_64__)
    write = (static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_ERR] & 2) != 0;
#endif
    uintptr_t address = reinterpret_cast<uintptr_t>(info->si_addr);
    Fiber* f = w->current;
    std::string message = describe_fault(*w, address, write) + " in " + thread_name(*f);
    w->launch->out_of_bounds.store(true);
    w->block_failed = true;
    w->launch->fail(message);
    // SA_NODEFER left the signal unblocked; leave the handler for the scheduler for good.
    mtosi_emu_switch(&f->sp, w->scheduler_sp);
    abort();  // unreachable: a failed block's fibers are never resumed
}

void install_fault_handler() {
    static std::once_flag once;
    std::call_once(once, [] {
        struct sigaction action;
        memset(&action, 0, sizeof action);
        action.sa_sigaction = on_fault;
        action.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
        sigemptyset(&action.sa_mask);
        sigaction(SIGSEGV, &action, &previous_segv);
        sigaction(SIGBUS, &action, &previous_bus);
    });
}

// The handler must not run on the fiber stack that overflowed: give every OS thread that runs
// blocks an alternate signal stack, unless it has one (Rust's threads do).
void ensure_fault_stack() {
    static thread_local bool done = false;
    if (done) return;
    done = true;
    stack_t current;
    if (sigaltstack(nullptr, &current) == 0 && !(current.ss_flags & SS_DISABLE)) return;
    size_t bytes = 64 * 1024;
    void* memory = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (memory == MAP_FAILED) return;
    stack_t stack;
    stack.ss_sp = memory;
    stack.ss_size = bytes;
    stack.ss_flags = 0;
    sigaltstack(&stack, nullptr);
}

bool run_block(Launch& launch, unsigned long long linear_block) {
    unsigned gx = launch.grid[0], gy = launch.grid[1];
    blockIdx = {unsigned(linear_block % gx), unsigned(linear_block / gx % gy), unsigned(linear_block / gx / gy)};
    worker.block_failed = false;
    ++worker.block_serial;
    for (auto& groups : worker.pending) groups.clear();
    memset(worker.exited, 0, sizeof worker.exited);
    // Shared memory is uninitialised on a GPU: fill it with NaN bytes so that reading it shows.
    // (Static __shared__ inside functions is filled where it is declared: MTOSI_EMU_SHARED_FRESH.)
    memset(mtosi_dynamic_shared, 0xff, launch.shared_bytes);
    for (const FileSharedVariable& v : file_shared()) memset(v.address(), 0xff, v.bytes);

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
    ensure_fault_stack();
    active_worker = &worker;
    gridDim = {launch.grid[0], launch.grid[1], launch.grid[2]};
    blockDim = {launch.block[0], launch.block[1], launch.block[2]};
    unsigned long long blocks = (unsigned long long)launch.grid[0] * launch.grid[1] * launch.grid[2];
    for (;;) {
        if (launch.failed.load()) break;
        unsigned long long k = launch.next_block.fetch_add(1);
        if (k >= blocks) break;
        if (!run_block(launch, launch.reverse ? blocks - 1 - k : k)) break;
        if (launch.cooperative) grid_block_exited(launch);
    }
    active_worker = nullptr;
    worker.launch = nullptr;
}

// Worker threads that live for the whole process: spawning threads per launch costs ~50 us and
// re-maps every fiber stack. A pool serves one launch at a time; concurrent launches (tests
// launch from several threads) each take an idle pool or make a new one, so a launch always
// gets the workers it was given.
class Pool {
   public:
    // Runs `launch` on the caller plus `helpers` pool threads, taking an idle pool.
    static void run_on_any(Launch& launch, unsigned helpers) {
        Pool* pool = nullptr;
        {
            std::lock_guard<std::mutex> lock(idle_mutex());
            auto& idle = idle_pools();
            if (!idle.empty()) {
                pool = idle.back();
                idle.pop_back();
            }
        }
        if (!pool) pool = new Pool();  // never destroyed: its threads block until the process ends
        pool->run(launch, helpers);
        std::lock_guard<std::mutex> lock(idle_mutex());
        idle_pools().push_back(pool);
    }

   private:
    static std::mutex& idle_mutex() {
        static std::mutex* m = new std::mutex();
        return *m;
    }
    static std::vector<Pool*>& idle_pools() {
        static std::vector<Pool*>* v = new std::vector<Pool*>();
        return *v;
    }

    void run(Launch& launch, unsigned helpers) {
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
        {
            // Every helper takes part: blocks are handed out only once all of them have started.
            std::unique_lock<std::mutex> lock(mutex_);
            started_.wait(lock, [this] { return running_ == wanted_; });
        }
        run_blocks(launch);
        std::unique_lock<std::mutex> lock(mutex_);
        done_.wait(lock, [this] { return joined_ == wanted_; });
        joined_ = 0;
        job_ = nullptr;
    }

    void serve() {
        unsigned long long seen = 0;
        for (;;) {
            Launch* job;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                start_.wait(lock, [&] { return generation_ != seen && running_ < wanted_; });
                seen = generation_;
                if (++running_ == wanted_) started_.notify_all();
                job = job_;
            }
            run_blocks(*job);
            std::lock_guard<std::mutex> lock(mutex_);
            if (++joined_ == wanted_) done_.notify_all();
        }
    }

    std::mutex mutex_;
    std::condition_variable start_, started_, done_;
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

void mtosi_emu_grid_sync(const char* file, int line) {
    Fiber* f = worker.current;
    if (!worker.launch->cooperative)
        fail_block(format("grid barrier at %s in %s of a launch that is not cooperative: its blocks need not be "
                          "resident at once, so the barrier can hang (launch it with launch_cooperative)",
                          site(file, line).c_str(), thread_name(*f).c_str()));
    f->state = FiberState::AtGridBarrier;
    f->file = file;
    f->line = line;
    yield_to_scheduler();
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

void mtosi_emu_register_file_shared(void* (*address)(), size_t bytes) {
    file_shared().push_back({address, bytes});
}

void mtosi_emu_shared_fresh(void* variable, size_t bytes) {
    for (auto& seen : worker.shared_seen) {
        if (seen.first != variable) continue;
        if (seen.second != worker.block_serial) {
            memset(variable, 0xff, bytes);
            seen.second = worker.block_serial;
        }
        return;
    }
    worker.shared_seen.push_back({variable, worker.block_serial});
    memset(variable, 0xff, bytes);
}

// Maps `bytes` of buffer between two PROT_NONE pages: the data ends at the second page
// (`end_aligned`) or starts right after the first, so that an access just past that side
// faults. Element alignment holds either way (sizes are multiples of the element size, pages
// of 4 KiB). The writable bytes around the data are the caller's canary.
struct mtosi_emu_mapping {
    unsigned char* base;
    size_t bytes;
    unsigned char* writable;
    size_t writable_bytes;
    unsigned char* data;
};

int mtosi_emu_buffer_map(size_t bytes, int end_aligned, mtosi_emu_mapping* out) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data_pages = (bytes + page - 1) / page;
    size_t total = (data_pages + 2) * page;
    void* base = mmap(nullptr, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) return 1;
    unsigned char* writable = static_cast<unsigned char*>(base) + page;
    if (data_pages && mprotect(writable, data_pages * page, PROT_READ | PROT_WRITE) != 0) {
        munmap(base, total);
        return 1;
    }
    out->base = static_cast<unsigned char*>(base);
    out->bytes = total;
    out->writable = writable;
    out->writable_bytes = data_pages * page;
    out->data = end_aligned ? writable + data_pages * page - bytes : writable;
    return 0;
}

void mtosi_emu_buffer_unmap(unsigned char* base, size_t bytes) { munmap(base, bytes); }

void mtosi_emu_assert_fail(const char* expr, const char* file, int line) {
    fail_block(format("assert(%s) failed at %s in %s", expr, site(file, line).c_str(),
                      thread_name(*worker.current).c_str()));
}

struct mtosi_emu_launch_params {
    unsigned grid[3];
    unsigned block[3];
    size_t shared_bytes;
    int reverse;
    unsigned workers;  // OS threads for this launch, as the caller decided (at most the blocks)
    const mtosi_emu_buffer_arg* buffers;  // one per argument
    unsigned buffer_count;
    int cooperative;  // every block resident at once (cuLaunchCooperativeKernel); grid barriers allowed
};

// The most blocks a cooperative launch may have on emu (each gets an OS thread for the launch).
constexpr unsigned long long kMaxCooperativeBlocks = 128;

// Runs every block of the grid. Returns 0; 1 with a message in `error` (NUL-terminated); or 2
// with a message when a kernel accessed memory out of bounds.
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
    launch.buffers = params->buffers;
    launch.buffer_count = params->buffer_count;
    launch.cooperative = params->cooperative != 0;
    launch.blocks = blocks;
    if (launch.cooperative && blocks > kMaxCooperativeBlocks)
        return report(format("a cooperative launch of %llu blocks exceeds the %llu that emu keeps resident at once",
                             blocks, kMaxCooperativeBlocks));
    install_fault_handler();

    unsigned long long workers = std::min<unsigned long long>(std::max(1u, params->workers), blocks);
    if (launch.cooperative) workers = blocks;
    if (workers == 1)
        run_blocks(launch);
    else
        Pool::run_on_any(launch, (unsigned)workers - 1);
    if (launch.failed.load()) {
        report(launch.error);
        return launch.out_of_bounds.load() ? 2 : 1;
    }
    return 0;
}

}  // extern "C"
