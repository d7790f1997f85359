/* The item source of memtrace-report: one place that says where items come from, today the
 * events of all threads merged by time (order.c) so that the replay sees a free on one thread
 * before another thread's allocation of the same address. Same conventions as reader.h: negative
 * RD_ERR_* codes, items valid until the next call, a status valid at any time.
 */
#ifndef MEMTRACE_REPORT_INPUT_H
#define MEMTRACE_REPORT_INPUT_H

#include "reader.h"

struct input;

/* As reader_open(): 0 with *out set, or a negative RD_ERR_* with *out set to an input whose
 * input_error() explains (NULL for RD_ERR_NOMEM). The caller closes it in every case. */
int input_open(struct input **out, const char *path);
int input_open_mem(struct input **out, const void *data, size_t size);

/* As reader_next(): 1 with *item filled, 0 at a clean end, or a negative RD_ERR_*. */
int input_next(struct input *in, struct rd_item *item);

const struct rd_status *input_status(const struct input *in);
const char *input_error(const struct input *in);
const char *input_name(const struct input *in);
void input_close(struct input *in);

#endif
