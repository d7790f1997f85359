/* CRC-32C (Castagnoli), the record checksum of the trace format (docs/trace-format.md §4).
 * Shared by the shim and the reader so both compute the same value. Pure computation: no
 * allocation, no locks, no system calls, safe inside a malloc hook and a signal handler.
 */
#ifndef MEMTRACE_COMMON_CRC32C_H
#define MEMTRACE_COMMON_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend a running CRC-32C by `len` bytes of `data`. Start from 0; the result of one call can be
 * passed as `crc` of the next to checksum data given in pieces. */
uint32_t mt_crc32c(uint32_t crc, const void *data, size_t len);

#endif
