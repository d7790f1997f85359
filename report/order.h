/* Time-ordered reading of a trace: the same items as report/reader.h, but the events of all
 * threads merged by time (trace-format.md §10), for consumers that replay the heap (a free of X
 * on one thread must come before another thread's allocation that returns X).
 *
 * How: order_open() makes one validating pass over the file with the reader (every record is
 * checked exactly as reader_next() checks it) and keeps only an index: one small entry per
 * EVENTS record (offset, thread, epoch, offset, first ts) and per other record. order_next()
 * then merges: each thread's chunks in §10 order, threads by the time of their next event. A
 * chunk's payload is read (pread, or pointed to in memory) only when the merge reaches it and
 * dropped when its last event is out, so memory is the index plus the chunks whose time ranges
 * overlap the merge front, never the events of the whole trace. Input that cannot be read
 * twice (a pipe, "-" = stdin) is first copied to an anonymous temporary file (tmpfile()).
 *
 * What comes out, and in which order:
 *  - Events: across threads by ts_ns, ties by thread serial (smaller first). Within a thread, in
 *    §10 order: chunks by (epoch, offset) whatever their place in the file (a STOLEN chunk
 *    written after a later one comes in its place); a write-through chunk at (epoch, offset)
 *    comes after the thread's buffered events before that byte offset and before the buffered
 *    event at it, even inside a buffered chunk; write-through chunks at the same position in
 *    file order. Thread order wins over time: ts_ns is non-decreasing over the whole stream
 *    except where one thread's own events go back in time (a nested event written through from
 *    a signal handler can be timed after the interrupted call's). REALLOC and MREMAP come at
 *    their ts_ns (when the new block exists); their release half is dated ts_ns - pre_ns.
 *  - MODULES entries: before every event whose ts_ns is >= the record's ts_ns, after the events
 *    before it in time.
 *  - PROCESS, LOSS, END and any other record the reader yields items for (REACH): after every
 *    event of the chunks before them in the file and every event timed before their own ts_ns
 *    (or at the same time), before the later ones; so events written after an END (late
 *    events, §8) that happened after it still follow it, and a REACH record sees the blocks
 *    live where it was written.
 *  - Non-event records among themselves: file order.
 *  - STACK definitions: a thread's own definitions precede its uses (thread order). A stack
 *    that a thread uses without defining it (another thread's definition was already written)
 *    is defined earlier in time in practice, but this is not guaranteed when the user was
 *    preempted between its clock read and its stack lookup: consumers must accept a use before
 *    its definition. order_late_stacks() counts such uses.
 *
 * Damage: the index pass stops at the first bad record exactly where the reader does; the merge
 * then yields every item of the records before it and returns the reader's error (same code,
 * same message, same status). order_status() is the reader's status after that pass (header,
 * records, chunks, complete, truncated, error offset, lost bytes, dropped describe the whole
 * input as soon as order_open() returns), except events and kind_counts, which count the events
 * yielded so far (equal to the reader's once order_next() returned 0 or an error).
 */
#ifndef MEMTRACE_REPORT_ORDER_H
#define MEMTRACE_REPORT_ORDER_H

#include <stddef.h>
#include <stdint.h>

#include "reader.h"

struct order;

/* Open `path` ("-" is stdin) for time-ordered reading. Same convention as reader_open(): 0 and
 * *out set, or a negative RD_ERR_* with *out set to an order whose order_error() explains (NULL
 * for RD_ERR_NOMEM when nothing could be allocated). The caller closes it in every case. */
int order_open(struct order **out, const char *path);

/* The same on a trace held in memory (tests); `data` must outlive the order. */
int order_open_mem(struct order **out, const void *data, size_t size);

/* Next item in time order (see the top of this file). Same convention as reader_next(): 1 with
 * *item filled (pointers valid until the next call), 0 at a clean end, or a negative RD_ERR_*
 * once every item before the damage was yielded; later calls return the same. */
int order_next(struct order *o, struct rd_item *item);

/* The reader's status (see the top of this file). */
const struct rd_status *order_status(const struct order *o);

/* One-line description of the error order_open() or order_next() returned, or "". */
const char *order_error(const struct order *o);

/* Events yielded so far that used a stack id not yet defined in the merged stream. */
uint64_t order_late_stacks(const struct order *o);

void order_close(struct order *o);

#endif
