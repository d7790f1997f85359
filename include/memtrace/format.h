/* memtrace trace format: the one header shared by the shim (preload/) and the reader (report/).
 *
 * docs/trace-format.md is normative; this file mirrors it. Every magic number, record type,
 * event kind and flag of the format is named here once and nowhere else. On-disk integers are
 * fixed-width little-endian; variable-length integers inside event chunks are LEB128 ("varint"),
 * signed deltas are zigzag-encoded first. No size_t, bool, enum or pointer ever reaches the disk.
 * Includes only <stdint.h> and <stddef.h>.
 */
#ifndef MEMTRACE_INCLUDE_FORMAT_H
#define MEMTRACE_INCLUDE_FORMAT_H

#include <stddef.h>
#include <stdint.h>

/* ---- versioning ---------------------------------------------------------------------------- */

#define MTF_MAGIC         "MEMTRACE" /* 8 bytes, no terminator on disk */
#define MTF_MAGIC_SIZE    8
#define MTF_VERSION_MAJOR 2 /* readers refuse other majors */
#define MTF_VERSION_MINOR 1 /* readers accept newer minors and skip what they do not know */

/* ---- file header: the first bytes of every trace ------------------------------------------- */

#define MTF_ORIGIN_START 0 /* process started under the shim (or the shim was loaded first) */
#define MTF_ORIGIN_FORK  1 /* forked child of parent_pid; its events start at the fork */
#define MTF_ORIGIN_EXEC  2 /* new program image after execve in a traced process */

struct mtf_file_header {
    uint8_t magic[MTF_MAGIC_SIZE]; /* MTF_MAGIC */
    uint16_t version_major;        /* MTF_VERSION_MAJOR */
    uint16_t version_minor;        /* MTF_VERSION_MINOR */
    uint32_t header_size;          /* bytes; readers skip an unknown tail */
    uint32_t pid;                  /* process that wrote the file */
    uint32_t parent_pid;           /* getppid() at start; for a fork child, the forking process */
    uint32_t origin;               /* MTF_ORIGIN_* */
    uint32_t page_size;            /* bytes */
    uint64_t start_realtime_ns;    /* CLOCK_REALTIME when the file was started */
    uint64_t start_monotonic_ns;   /* CLOCK_MONOTONIC at the same instant; event times are on it */
    uint32_t max_frames;           /* MEMTRACE_DEPTH in force */
    uint32_t pointer_size;         /* 8 on the platforms we support */
    uint64_t sample_bytes;         /* 2.1: MEMTRACE_SAMPLE, mean bytes between sampled
                                      allocations; 0 (and in 2.0) every call is recorded */
    uint64_t reserved[5];          /* zero; future minors may give them meaning */
};

#define MTF_FILE_HEADER_SIZE 104
_Static_assert(sizeof(struct mtf_file_header) == MTF_FILE_HEADER_SIZE, "file header size");
_Static_assert(offsetof(struct mtf_file_header, version_major) == 8, "version offset");
_Static_assert(offsetof(struct mtf_file_header, header_size) == 12, "header_size offset");
_Static_assert(offsetof(struct mtf_file_header, start_realtime_ns) == 32, "realtime offset");
_Static_assert(offsetof(struct mtf_file_header, max_frames) == 48, "max_frames offset");
_Static_assert(offsetof(struct mtf_file_header, sample_bytes) == 56, "sample_bytes offset");

/* ---- record framing: everything after the header is a sequence of records ------------------ */

#define MTF_RECORD_MAGIC    0x5243544dU /* "MTCR" read as little-endian bytes 'M','T','C','R' */
#define MTF_RECORD_MAX_SIZE (16U << 20) /* payload bytes; larger is corruption */

struct mtf_record_header {
    uint32_t magic;        /* MTF_RECORD_MAGIC */
    uint16_t type;         /* MTF_REC_* ; unknown types are skipped */
    uint16_t flags;        /* MTF_RECF_* */
    uint32_t payload_size; /* bytes following this header, <= MTF_RECORD_MAX_SIZE */
    uint32_t crc32c;       /* CRC-32C of bytes 0..11 of this header, then the payload */
};

#define MTF_RECORD_HEADER_SIZE 16
#define MTF_RECORD_CRC_SPAN    12 /* header bytes covered by crc32c */
_Static_assert(sizeof(struct mtf_record_header) == MTF_RECORD_HEADER_SIZE, "record header size");
_Static_assert(offsetof(struct mtf_record_header, crc32c) == MTF_RECORD_CRC_SPAN, "crc offset");

#define MTF_REC_PROCESS 1 /* who wrote the trace: strings, see struct mtf_process */
#define MTF_REC_MODULES 2 /* module loads/unloads, see struct mtf_module */
#define MTF_REC_EVENTS  3 /* one thread's events, see struct mtf_chunk */
#define MTF_REC_END     4 /* clean end of the trace, see struct mtf_end */
#define MTF_REC_LOSS    5 /* events that could not be recorded, see struct mtf_loss */
#define MTF_REC_REACH   6 /* leak scan at exit: heap blocks no longer reachable, see mtf_reach */
#define MTF_REC_TOTALS  7 /* 2.1, sampled traces: exact call and live totals, see mtf_totals */

#define MTF_RECF_NONE 0 /* no record flags are defined in 1.0 */

/* ---- MTF_REC_PROCESS ------------------------------------------------------------------------- */

/* Fixed part, then exe_len bytes of executable path, then argv_len bytes of the command line
 * (arguments separated by NUL), then cwd_len bytes of working directory. No terminators. */
struct mtf_process {
    uint64_t ts_ns;    /* CLOCK_MONOTONIC */
    uint32_t exe_len;  /* bytes */
    uint32_t argv_len; /* bytes */
    uint32_t cwd_len;  /* bytes */
    uint32_t argc;     /* number of NUL-separated arguments */
};

#define MTF_PROCESS_SIZE 24
_Static_assert(sizeof(struct mtf_process) == MTF_PROCESS_SIZE, "process size");

/* ---- MTF_REC_MODULES ------------------------------------------------------------------------- */

/* A MODULES record holds `count` entries, each a struct mtf_module followed by path_len bytes of
 * path, build_id_len bytes of GNU build id, and nseg struct mtf_segment. */
struct mtf_modules {
    uint64_t ts_ns; /* CLOCK_MONOTONIC when the map was read */
    uint32_t count; /* entries that follow */
    uint32_t reserved;
};

#define MTF_MODULES_SIZE 16
_Static_assert(sizeof(struct mtf_modules) == MTF_MODULES_SIZE, "modules size");

#define MTF_MOD_LOAD   1 /* module is mapped from now on */
#define MTF_MOD_UNLOAD 2 /* module (same id) is gone; addresses in its range may be reused */

#define MTF_MODF_MAIN 1 /* the main executable */
#define MTF_MODF_SHIM 2 /* libmemtrace.so itself: its frames are never shown */
#define MTF_MODF_VDSO 4 /* the kernel's vDSO (no file on disk) */

struct mtf_module {
    uint32_t id;           /* stable for the module's life in this trace; ids start at 1 */
    uint16_t action;       /* MTF_MOD_* */
    uint16_t flags;        /* MTF_MODF_* */
    uint64_t base;         /* load bias: runtime address = base + ELF virtual address */
    uint32_t path_len;     /* bytes of path that follow */
    uint16_t build_id_len; /* bytes of build id that follow the path (0: none) */
    uint16_t nseg;         /* struct mtf_segment entries that follow the build id */
};

#define MTF_MODULE_SIZE 24
_Static_assert(sizeof(struct mtf_module) == MTF_MODULE_SIZE, "module size");

struct mtf_segment {
    uint64_t vaddr;  /* ELF p_vaddr (add base for the runtime address) */
    uint64_t memsz;  /* ELF p_memsz */
    uint32_t pflags; /* ELF p_flags (PF_X = 1, PF_W = 2, PF_R = 4) */
    uint32_t reserved;
};

#define MTF_SEGMENT_SIZE 24
_Static_assert(sizeof(struct mtf_segment) == MTF_SEGMENT_SIZE, "segment size");

/* ---- MTF_REC_EVENTS: a chunk of one thread's events ------------------------------------------ */

#define MTF_CHUNKF_THREAD_END   1  /* the thread's last buffered chunk (exit flush) */
#define MTF_CHUNKF_STOLEN       2  /* written by another thread on this thread's behalf */
#define MTF_CHUNKF_WRITETHROUGH 4  /* written immediately, outside the thread's buffer */
#define MTF_CHUNKF_PREINIT      8  /* holds events from before the trace file was opened */
#define MTF_CHUNKF_ZSTD         16 /* events compressed: see below */

/* MTF_CHUNKF_ZSTD: the payload_size - MTF_CHUNK_SIZE bytes after the chunk header are exactly
 * one zstd frame whose content is the events_size bytes of encoded events, at most
 * MTF_RECORD_MAX_SIZE - MTF_CHUNK_SIZE (docs/trace-format.md §7.5). */

/* Events of one chunk decode from the base_* state; every chunk is decodable on its own. The
 * events of one thread are ordered by (epoch, offset) across chunks; threads are merged by
 * timestamp (docs/trace-format.md, "Ordering"). */
struct mtf_chunk {
    uint32_t tid;           /* kernel thread id (may be reused by a later thread) */
    uint32_t thread_serial; /* unique per thread within this trace, from 1 */
    uint32_t epoch;         /* buffer generation of this thread */
    uint32_t offset;        /* byte offset of the first event within that generation */
    uint64_t base_ts_ns;    /* time state before the first event */
    uint64_t base_addr;     /* address state before the first event */
    uint64_t first_ts_ns;   /* time of the first event */
    uint64_t last_ts_ns;    /* time of the last event */
    uint32_t base_stack;    /* stack id state before the first event */
    uint32_t nevents;       /* events in the chunk */
    uint32_t flags;         /* MTF_CHUNKF_* */
    uint32_t events_size;   /* bytes of encoded events following this struct (MTF_CHUNKF_ZSTD:
                               once decompressed) */
};

#define MTF_CHUNK_SIZE 64
_Static_assert(sizeof(struct mtf_chunk) == MTF_CHUNK_SIZE, "chunk size");
_Static_assert(offsetof(struct mtf_chunk, base_ts_ns) == 16, "chunk base offset");
_Static_assert(offsetof(struct mtf_chunk, base_stack) == 48, "chunk stack offset");

/* Each event: one tag byte = kind (low 5 bits) | flags (high 3 bits), then varint fields in the
 * order docs/trace-format.md gives for its kind. Every event starts with a ts delta. */
#define MTF_EV_KIND_MASK 0x1fU
#define MTF_EVF_FAILED   0x20U /* the call failed (NULL, MAP_FAILED, -1); no memory changed */
#define MTF_EVF_NESTED   0x40U /* recorded from a nested context (signal handler): no stack */
#define MTF_EVF_TRUNC    0x80U /* STACK only: the stack was deeper than max_frames */
#define MTF_EVF_CLASS    0x80U /* other kinds: a class varint (MTF_CLASS_*) follows the ts delta */

/* Memory classes (docs/trace-format.md §7.2). An event without MTF_EVF_CLASS has its kind's
 * default class: heap for the malloc family, mapped for a file-backed mmap, external for an
 * anonymous one, the old range's class for mremap. */
#define MTF_CLASS_HEAP     0 /* allocator-managed: heapUsed, the heap cap */
#define MTF_CLASS_EXTERNAL 1 /* anonymous memory mapped by the program: external */
#define MTF_CLASS_MAPPED   2 /* file-backed mappings: mapped */
#define MTF_CLASS_COUNT    3

#define MTF_EV_MALLOC         1
#define MTF_EV_CALLOC         2
#define MTF_EV_REALLOC        3
#define MTF_EV_REALLOCARRAY   4
#define MTF_EV_FREE           5
#define MTF_EV_POSIX_MEMALIGN 6
#define MTF_EV_ALIGNED_ALLOC  7
#define MTF_EV_MEMALIGN       8
#define MTF_EV_VALLOC         9
#define MTF_EV_PVALLOC        10
#define MTF_EV_MMAP           11
#define MTF_EV_MMAP64         12
#define MTF_EV_MUNMAP         13
#define MTF_EV_MREMAP         14
#define MTF_EV_STACK          15 /* definition of a stack id, not a call */
#define MTF_EV_FORK           16 /* this thread forked; the child's pid follows */
#define MTF_EV_EXEC           17 /* this thread is about to execve (the END record follows) */
#define MTF_EV_SNAPSHOT       18 /* a memoryUsage snapshot (interval, mark, exit, limit) */
#define MTF_EV_LIMIT          19 /* the heap or external cap refused a call */
#define MTF_EV_KIND_COUNT     20 /* one past the highest kind */

/* SNAPSHOT reasons */
#define MTF_SNAP_START    0 /* first snapshot of a forked child: what it inherited */
#define MTF_SNAP_INTERVAL 1 /* MEMTRACE_INTERVAL elapsed */
#define MTF_SNAP_MARK     2 /* memtrace_mark(label) */
#define MTF_SNAP_EXIT     3 /* the process is ending (written before END) */
#define MTF_SNAP_LIMIT    4 /* a cap refused a call (follows the LIMIT event) */
#define MTF_SNAP_COUNT    5
#define MTF_LABEL_MAX     255 /* bytes of a snapshot label */

/* LIMIT modes */
#define MTF_LIMIT_ABORT  0 /* the process dies with the fatal error (SIGABRT) */
#define MTF_LIMIT_ENOMEM 1 /* the call returned NULL / MAP_FAILED with ENOMEM */

/* ---- MTF_REC_END: written once, last, when the process ends with the trace intact ----------- */

#define MTF_END_EXIT   1 /* exit() or return from main */
#define MTF_END_EXEC   2 /* the image was replaced by execve */
#define MTF_END_SIGNAL 3 /* killed by a fatal signal the shim could observe (abort, cap) */

struct mtf_end {
    uint64_t ts_ns;         /* CLOCK_MONOTONIC */
    uint32_t reason;        /* MTF_END_* */
    int32_t status;         /* exit status, or signal number, or -1 when unknown */
    uint64_t threads;       /* threads that recorded events */
    uint64_t events;        /* events written in all chunks (STACK definitions included) */
    uint64_t dropped;       /* program calls that were not recorded (must be 0) */
    uint64_t unknown_frees; /* reserved for the reader; the shim writes 0 */
    uint64_t counts[MTF_EV_KIND_COUNT]; /* events written, per kind */
};

#define MTF_END_SIZE (48 + 8 * MTF_EV_KIND_COUNT)
_Static_assert(sizeof(struct mtf_end) == MTF_END_SIZE, "end size");

/* ---- MTF_REC_LOSS: events that could not be recorded ------------------------------------------
 */

#define MTF_LOSS_WRITER 1 /* output failed (disk full, fd taken): tracing stopped */
#define MTF_LOSS_THREAD 2 /* a thread could not get a buffer (out of memory) */

struct mtf_loss {
    uint64_t ts_ns;  /* CLOCK_MONOTONIC */
    uint32_t reason; /* MTF_LOSS_* */
    uint32_t tid;    /* thread affected, 0 for all */
    uint64_t count;  /* events not recorded */
};

#define MTF_LOSS_SIZE 24
_Static_assert(sizeof(struct mtf_loss) == MTF_LOSS_SIZE, "loss size");

/* ---- MTF_REC_REACH: what the exit-time leak scan found ---------------------------------------
 * The shim scans the roots (writable segments of every module, thread stacks and TLS, the
 * registers of the scanning thread) and then the reachable heap blocks for words pointing into
 * live heap blocks (to the start or inside). A live block not reached is lost: "direct" when no
 * other lost block points to it either, "indirect" when only lost blocks do (memcheck's
 * definitely / indirectly lost). One scan may need several records; the last has MTF_REACHF_LAST.
 */
#define MTF_REACHF_LAST    1 /* the last record of this scan */
#define MTF_REACHF_RUNNING 2 /* other threads were running: their registers were not scanned */

#define MTF_REACH_DIRECT   1 /* no pointer to the block from anywhere scanned */
#define MTF_REACH_INDIRECT 2 /* pointed to only from lost blocks */

struct mtf_reach {
    uint64_t ts_ns;       /* CLOCK_MONOTONIC when the scan ran */
    uint64_t live_blocks; /* live heap blocks scanned */
    uint64_t live_bytes;  /* their requested bytes */
    uint64_t root_bytes;  /* bytes of roots scanned */
    uint32_t flags;       /* MTF_REACHF_* */
    uint32_t count;       /* struct mtf_reach_entry that follow */
};

#define MTF_REACH_SIZE 40
_Static_assert(sizeof(struct mtf_reach) == MTF_REACH_SIZE, "reach size");

struct mtf_reach_entry {
    uint64_t addr;  /* the block's address, as its allocation event gave it */
    uint32_t state; /* MTF_REACH_DIRECT or MTF_REACH_INDIRECT */
    uint32_t reserved;
};

#define MTF_REACH_ENTRY_SIZE 16
_Static_assert(sizeof(struct mtf_reach_entry) == MTF_REACH_ENTRY_SIZE, "reach entry size");

/* ---- MTF_REC_TOTALS: exact figures of a sampled trace (2.1) ---------------------------------
 * With MEMTRACE_SAMPLE only some allocations are recorded; this record, written at exit before
 * END, gives what sampling leaves out: every program call per kind (recorded or not) and what is
 * live at exit. Counts start when the process (a fork child: the fork) started. */
#define MTF_TOTALSF_SCANNED 1 /* the leak scan ran: lost_* hold its result (REACH records) */

struct mtf_totals {
    uint64_t ts_ns;                    /* CLOCK_MONOTONIC */
    uint64_t sample_bytes;             /* the sampling rate in force (as in the file header) */
    int64_t live_blocks;               /* heap-family blocks allocated minus blocks freed */
    int64_t live_usable;               /* their usable bytes (the heapUsed counted for them) */
    uint64_t alloc_bytes;              /* requested bytes of every successful allocation */
    uint64_t lost_blocks;              /* leak scan: unreachable blocks, direct + indirect */
    uint64_t lost_bytes;               /* ... their requested bytes */
    uint64_t unsampleable;             /* allocations sampled but not tracked (set full) */
    uint32_t flags;                    /* MTF_TOTALSF_* */
    uint32_t reserved;                 /* zero */
    uint64_t calls[MTF_EV_KIND_COUNT]; /* program calls per kind, recorded or not */
};

#define MTF_TOTALS_SIZE (72 + 8 * MTF_EV_KIND_COUNT)
_Static_assert(sizeof(struct mtf_totals) == MTF_TOTALS_SIZE, "totals size");
_Static_assert(offsetof(struct mtf_totals, flags) == 64, "totals flags offset");

/* ---- varint limits ----------------------------------------------------------------------------
 */

#define MTF_VARINT_MAX_BYTES 10  /* a 64-bit value needs at most 10 LEB128 bytes */
#define MTF_EVENT_MAX_BYTES  384 /* upper bound of one encoded non-STACK event (SNAPSHOT) */
#define MTF_MAX_FRAMES_LIMIT 256 /* highest accepted MEMTRACE_DEPTH */

#endif
