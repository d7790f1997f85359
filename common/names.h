/* Names of the trace format's values as people read them, shared by the shim (the fatal
 * heap-limit message) and the report: one table, so the two never disagree. */
#ifndef MEMTRACE_COMMON_NAMES_H
#define MEMTRACE_COMMON_NAMES_H

/* The hooked function an event kind records ("malloc", "mmap64"), "stack", "fork", "exec",
 * "snapshot", "limit"; NULL for a kind the format does not have. */
const char *mt_kind_name(unsigned kind);

#endif
