/* preload/writer.c: trace file naming and creation, the file header, record framing, and the
 * failure paths. Each test works in its own temporary directory; faults are injected by swapping
 * entries of mt_sys (SQLite's aSyscall idea) and restored by mt_writer_sys_default(). Files are
 * read back and checked field by field against include/memtrace/format.h; the record CRC is
 * recomputed with mt_crc32c, whose own values are pinned in test_crc32c.c.
 */
#include <criterion/criterion.h>
#include <criterion/new/assert.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "crc32c.h"
#include "helpers.h"
#include "log.h"
#include "memtrace/format.h"
#include "writer.h"

static char tmp[PATH_MAX]; /* this test's directory (real path, as getcwd reports it) */
static struct mt_sys real; /* the default system calls, for fault wrappers to forward to */

/* ---- fixture --------------------------------------------------------------------------------- */

static void writer_setup(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[PATH_MAX];
    snprintf(tmpl, sizeof tmpl, "%s/mt-writer-XXXXXX", base && *base ? base : "/tmp");
    cr_assert(ne(ptr, mkdtemp(tmpl), NULL), "mkdtemp %s: %s", tmpl, strerror(errno));
    cr_assert(ne(ptr, realpath(tmpl, tmp), NULL));
    mt_writer_sys_default();
    real = mt_sys;
    mt_log_reset();
}

static void writer_teardown(void)
{
    mt_writer_forget();
    mt_writer_sys_default();
    DIR *d = opendir(tmp);
    if (d == NULL)
        return;
    struct dirent *e;
    char p[PATH_MAX + 256];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        snprintf(p, sizeof p, "%s/%s", tmp, e->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(tmp);
}

TestSuite(writer, .init = writer_setup, .fini = writer_teardown, .timeout = 20);

/* ---- helpers --------------------------------------------------------------------------------- */

static void in_tmp(char *out, size_t cap, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", tmp, name);
    cr_assert(lt(int, n, (int)cap));
}

static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert(eq(int, stat(path, &st), 0), "stat %s: %s", path, strerror(errno));
    return st.st_size;
}

static void write_file(const char *path, const char *text)
{
    int f = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(ge(int, f, 0));
    cr_assert(eq(long, (long)write(f, text, strlen(text)), (long)strlen(text)));
    cr_assert(eq(int, close(f), 0));
}

static uint64_t now_ns(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Open the trace at tmp/name (a pattern without escapes) and check the returned path. */
static void open_plain(const char *name)
{
    char pattern[PATH_MAX];
    in_tmp(pattern, sizeof pattern, name);
    int rc = mt_writer_open(pattern, MTF_ORIGIN_START, 64);
    cr_assert(eq(int, rc, 0), "mt_writer_open(%s) = %d", pattern, rc);
    cr_assert(eq(str, (char *)mt_writer_path(), pattern));
}

/* What the program wrote to fd 2 must be exactly one line, containing each non-NULL needle. */
static void expect_one_error_line(const char *a, const char *b, const char *c)
{
    static char out[8192];
    fflush(stderr);
    size_t n = fread(out, 1, sizeof out - 1, cr_get_redirected_stderr());
    out[n] = '\0';
    const char *prefix = "memtrace: error: ";
    cr_expect(eq(int, strncmp(out, prefix, strlen(prefix)), 0), "prefix: \"%s\"", out);
    cr_expect(eq(ptr, strchr(out, '\n'), n ? out + n - 1 : NULL), "one line: \"%s\"", out);
    const char *needles[] = { a, b, c };
    for (int i = 0; i < 3; i++)
        if (needles[i] != NULL)
            cr_expect(ne(ptr, strstr(out, needles[i]), NULL), "\"%s\" in \"%s\"", needles[i], out);
}

static void expect_no_output(void)
{
    static char out[4096];
    fflush(stderr);
    size_t n = fread(out, 1, sizeof out - 1, cr_get_redirected_stderr());
    out[n] = '\0';
    cr_expect(eq(str, out, ""), "nothing printed");
}

/* The descriptor in [from, to) that refers to the file at path, or -1. */
static int find_fd(const char *path, int from, int to)
{
    struct stat want, st;
    cr_assert(eq(int, stat(path, &want), 0), "stat %s: %s", path, strerror(errno));
    for (int f = from; f < to; f++)
        if (fstat(f, &st) == 0 && st.st_dev == want.st_dev && st.st_ino == want.st_ino)
            return f;
    return -1;
}

/* Check one record at *off of buf: framing, CRC, and the payload bytes. Advances *off. */
static void expect_record(const uint8_t *buf, size_t len, size_t *off, uint16_t type,
                          const void *payload, uint32_t size)
{
    cr_assert(le(sz, *off + MTF_RECORD_HEADER_SIZE, len), "record header at %zu in file", *off);
    struct mtf_record_header h;
    memcpy(&h, buf + *off, sizeof h);
    cr_expect(eq(int, memcmp(buf + *off, "MTCR", 4), 0), "magic bytes at %zu", *off);
    cr_expect(eq(u32, h.magic, MTF_RECORD_MAGIC));
    cr_expect(eq(u16, h.type, type), "type at %zu", *off);
    cr_expect(eq(u16, h.flags, MTF_RECF_NONE));
    cr_assert(eq(u32, h.payload_size, size), "payload_size at %zu", *off);
    cr_assert(le(sz, *off + MTF_RECORD_HEADER_SIZE + size, len), "payload within the file");
    const uint8_t *p = buf + *off + MTF_RECORD_HEADER_SIZE;
    uint32_t crc = mt_crc32c(0, buf + *off, MTF_RECORD_CRC_SPAN);
    crc = mt_crc32c(crc, p, size);
    cr_expect(eq(u32, h.crc32c, crc), "crc at %zu", *off);
    cr_expect(eq(int, memcmp(p, payload, size), 0), "payload bytes at %zu", *off);
    *off += MTF_RECORD_HEADER_SIZE + size;
}

/* ---- fault injection ------------------------------------------------------------------------- */

enum fault { F_NONE, F_ERRNO, F_HALF, F_EINTR };

static enum fault fault;
static int fault_from, fault_to; /* calls in [from, to] misbehave (1-based) */
static int fault_errno;
static int writev_calls;

static long fault_writev(int f, const struct iovec *iov, int iovcnt)
{
    writev_calls++;
    if (fault == F_NONE || writev_calls < fault_from || writev_calls > fault_to)
        return real.writev(f, iov, iovcnt);
    switch (fault) {
    case F_ERRNO:
        errno = fault_errno;
        return -1;
    case F_EINTR:
        errno = EINTR;
        return -1;
    case F_HALF: {
        /* Write the first half of the bytes, as a full disk or a signal would. */
        size_t total = 0;
        for (int i = 0; i < iovcnt; i++)
            total += iov[i].iov_len;
        size_t want = total / 2, got = 0;
        struct iovec v[16];
        int n = 0;
        for (int i = 0; i < iovcnt && got < want; i++, n++) {
            v[n] = iov[i];
            if (v[n].iov_len > want - got)
                v[n].iov_len = want - got;
            got += v[n].iov_len;
        }
        return real.writev(f, v, n);
    }
    case F_NONE:
        break;
    }
    return -1;
}

static void inject(enum fault kind, int from, int to, int err)
{
    fault = kind;
    fault_from = from;
    fault_to = to;
    fault_errno = err;
    writev_calls = 0;
    mt_sys.writev = fault_writev;
}

/* ---- mt_writer_expand ------------------------------------------------------------------------ */

Test(writer, expand_substitutes_pid_exe_and_percent)
{
    char out[256];
    cr_assert(
        eq(int, mt_writer_expand(out, sizeof out, "/t/%e.%p.%%.mtr", 4242, "prog", "/cwd"), 0));
    cr_expect(eq(str, out, "/t/prog.4242.%.mtr"), "absolute pattern ignores the directory");
    cr_assert(eq(int, mt_writer_expand(out, sizeof out, "/%p%p%%%%", 7, "x", NULL), 0));
    cr_expect(eq(str, out, "/77%%"));
}

Test(writer, expand_makes_relative_path_absolute)
{
    char out[256];
    cr_assert(eq(int, mt_writer_expand(out, sizeof out, "run.%p.mtr", 7, "x", "/home/u"), 0));
    cr_expect(eq(str, out, "/home/u/run.7.mtr"));
    cr_assert(eq(int, mt_writer_expand(out, sizeof out, "d/%e", 7, "prog", "/w"), 0));
    cr_expect(eq(str, out, "/w/d/prog"));
}

Test(writer, expand_keeps_relative_path_without_directory)
{
    char out[256];
    cr_assert(eq(int, mt_writer_expand(out, sizeof out, "run.%p", 7, "x", NULL), 0));
    cr_expect(eq(str, out, "run.7"));
    cr_assert(eq(int, mt_writer_expand(out, sizeof out, "run.%p", 7, "x", ""), 0));
    cr_expect(eq(str, out, "run.7"));
}

Test(writer, expand_fails_when_result_does_not_fit)
{
    char out[16];
    cr_expect(eq(int, mt_writer_expand(out, 10, "/abcdefgh", 1, "x", NULL), 0), "9 + NUL fit");
    cr_expect(eq(str, out, "/abcdefgh"));
    cr_expect(eq(int, mt_writer_expand(out, 10, "/abcdefghi", 1, "x", NULL), -1), "10 + NUL");
    cr_expect(eq(int, mt_writer_expand(out, 10, "/a.%p", 123456789, "x", NULL), -1), "pid");
    cr_expect(eq(int, mt_writer_expand(out, 10, "/%e", 1, "long-program", NULL), -1), "exe");
    cr_expect(eq(int, mt_writer_expand(out, 10, "abc", 1, "x", "/longdir"), -1), "directory");
}

/* ---- mt_writer_open -------------------------------------------------------------------------- */

Test(writer, open_creates_file_0600_with_header)
{
    char path[PATH_MAX];
    in_tmp(path, sizeof path, "t.mtr");
    umask(022);
    uint64_t rt0 = now_ns(CLOCK_REALTIME), mono0 = now_ns(CLOCK_MONOTONIC);
    cr_assert(eq(int, mt_writer_open(path, MTF_ORIGIN_FORK, 33), 0));
    uint64_t rt1 = now_ns(CLOCK_REALTIME), mono1 = now_ns(CLOCK_MONOTONIC);
    cr_expect(eq(int, mt_writer_ok(), 1));
    cr_expect(eq(int, mt_writer_failed(), 0));
    cr_expect(eq(str, (char *)mt_writer_path(), path));

    struct stat st;
    cr_assert(eq(int, lstat(path, &st), 0));
    cr_expect(eq(int, S_ISREG(st.st_mode) != 0, 1));
    cr_expect(eq(int, (int)(st.st_mode & 07777), 0600), "mode %o", (unsigned)(st.st_mode & 07777));

    size_t len;
    uint8_t *buf = h_must_read(path, &len);
    cr_assert(eq(sz, len, MTF_FILE_HEADER_SIZE), "the file holds only the header");
    struct mtf_file_header h;
    memcpy(&h, buf, sizeof h);
    cr_expect(eq(int, memcmp(h.magic, MTF_MAGIC, MTF_MAGIC_SIZE), 0));
    cr_expect(eq(u16, h.version_major, MTF_VERSION_MAJOR));
    cr_expect(eq(u16, h.version_minor, MTF_VERSION_MINOR));
    cr_expect(eq(u32, h.header_size, MTF_FILE_HEADER_SIZE));
    cr_expect(eq(u32, h.pid, (uint32_t)getpid()));
    cr_expect(eq(u32, h.parent_pid, (uint32_t)getppid()));
    cr_expect(eq(u32, h.origin, MTF_ORIGIN_FORK));
    cr_expect(eq(u32, h.page_size, (uint32_t)sysconf(_SC_PAGESIZE)));
    cr_expect(ge(u64, h.start_realtime_ns, rt0));
    cr_expect(le(u64, h.start_realtime_ns, rt1));
    cr_expect(ge(u64, h.start_monotonic_ns, mono0));
    cr_expect(le(u64, h.start_monotonic_ns, mono1));
    cr_expect(eq(u32, h.max_frames, 33));
    cr_expect(eq(u32, h.pointer_size, 8));
    cr_expect(eq(u64, h.sample_bytes, 0), "MEMTRACE_SAMPLE unset: every call recorded");
    for (int i = 0; i < 5; i++)
        cr_expect(eq(u64, h.reserved[i], 0), "reserved[%d]", i);
    free(buf);
}

Test(writer, open_expands_pid_and_exe_in_pattern)
{
    char link[PATH_MAX], pattern[PATH_MAX], want[PATH_MAX * 2];
    ssize_t k = readlink("/proc/self/exe", link, sizeof link - 1);
    cr_assert(gt(long, (long)k, 0));
    link[k] = '\0';
    in_tmp(pattern, sizeof pattern, "%e.%p.%%.mtr");
    snprintf(want, sizeof want, "%s/%s.%d.%%.mtr", tmp, strrchr(link, '/') + 1, (int)getpid());
    cr_assert(eq(int, mt_writer_open(pattern, MTF_ORIGIN_START, 64), 0));
    cr_expect(eq(str, (char *)mt_writer_path(), want));
    cr_expect(eq(sz, (size_t)file_size(want), MTF_FILE_HEADER_SIZE));
}

Test(writer, open_resolves_relative_pattern_against_cwd)
{
    char want[PATH_MAX * 2];
    cr_assert(eq(int, chdir(tmp), 0));
    snprintf(want, sizeof want, "%s/rel.%d.mtr", tmp, (int)getpid());
    cr_assert(eq(int, mt_writer_open("rel.%p.mtr", MTF_ORIGIN_START, 64), 0));
    cr_expect(eq(str, (char *)mt_writer_path(), want));
    cr_expect(eq(str, (char *)mt_writer_cwd(), tmp));
    cr_expect(eq(sz, (size_t)file_size(want), MTF_FILE_HEADER_SIZE));
}

Test(writer, open_adds_suffix_when_name_exists)
{
    char name[PATH_MAX], want[PATH_MAX];
    in_tmp(name, sizeof name, "t.mtr");
    in_tmp(want, sizeof want, "t.mtr.1");
    write_file(name, "keep");
    cr_assert(eq(int, mt_writer_open(name, MTF_ORIGIN_START, 64), 0));
    cr_expect(eq(str, (char *)mt_writer_path(), want));
    cr_expect(eq(long, (long)file_size(name), 4), "the existing file is untouched");
    cr_expect(eq(long, (long)file_size(want), MTF_FILE_HEADER_SIZE));
}

Test(writer, open_takes_next_free_suffix)
{
    char name[PATH_MAX], p[PATH_MAX + 8];
    in_tmp(name, sizeof name, "t.mtr");
    write_file(name, "0");
    for (int i = 1; i <= 2; i++) {
        snprintf(p, sizeof p, "%s.%d", name, i);
        write_file(p, "x");
    }
    cr_assert(eq(int, mt_writer_open(name, MTF_ORIGIN_START, 64), 0));
    snprintf(p, sizeof p, "%s.3", name);
    cr_expect(eq(str, (char *)mt_writer_path(), p));
}

Test(writer, open_does_not_follow_symlink_at_name)
{
    char name[PATH_MAX], victim[PATH_MAX], want[PATH_MAX];
    in_tmp(name, sizeof name, "t.mtr");
    in_tmp(victim, sizeof victim, "victim");
    in_tmp(want, sizeof want, "t.mtr.1");
    write_file(victim, "keep");
    cr_assert(eq(int, symlink(victim, name), 0));
    cr_assert(eq(int, mt_writer_open(name, MTF_ORIGIN_START, 64), 0));
    cr_expect(eq(str, (char *)mt_writer_path(), want));
    cr_expect(eq(long, (long)file_size(victim), 4), "the link's target is untouched");
    struct stat st;
    cr_assert(eq(int, lstat(name, &st), 0));
    cr_expect(eq(int, S_ISLNK(st.st_mode) != 0, 1), "the link is still a link");
}

Test(writer, open_does_not_create_dangling_symlink_target)
{
    char name[PATH_MAX], ghost[PATH_MAX], want[PATH_MAX];
    in_tmp(name, sizeof name, "t.mtr");
    in_tmp(ghost, sizeof ghost, "ghost");
    in_tmp(want, sizeof want, "t.mtr.1");
    cr_assert(eq(int, symlink(ghost, name), 0));
    cr_assert(eq(int, mt_writer_open(name, MTF_ORIGIN_START, 64), 0));
    cr_expect(eq(str, (char *)mt_writer_path(), want));
    cr_expect(eq(int, access(ghost, F_OK), -1), "no file created through the link");
}

Test(writer, open_fails_with_enoent_for_missing_directory, .init = cr_redirect_stderr)
{
    char path[PATH_MAX];
    in_tmp(path, sizeof path, "nodir/t.mtr");
    cr_expect(eq(int, mt_writer_open(path, MTF_ORIGIN_START, 64), -ENOENT));
    cr_expect(eq(int, mt_writer_ok(), 0));
    struct iovec v = { "x", 1 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_LOSS, &v, 1), -1), "nothing to write to");
    expect_one_error_line(path, "No such file or directory", NULL);
}

static int open_calls;

static int open_always_exists(const char *p, int flags, int mode)
{
    (void)p;
    (void)flags;
    (void)mode;
    open_calls++;
    errno = EEXIST;
    return -1;
}

Test(writer, open_gives_up_after_999_suffixes, .init = cr_redirect_stderr)
{
    char path[PATH_MAX];
    in_tmp(path, sizeof path, "t.mtr");
    mt_sys.open = open_always_exists;
    cr_expect(eq(int, mt_writer_open(path, MTF_ORIGIN_START, 64), -EEXIST));
    cr_expect(eq(int, open_calls, 1000), "the name, then .1 .. .999");
    cr_expect(eq(int, mt_writer_ok(), 0));
    expect_one_error_line(path, "File exists", NULL);
}

static int dupfd_fails(int f, int min_fd)
{
    (void)f;
    (void)min_fd;
    errno = EMFILE;
    return -1;
}

Test(writer, open_keeps_low_descriptor_when_dup_fails)
{
    mt_sys.dupfd = dupfd_fails;
    open_plain("t.mtr");
    struct iovec v = { "abcd", 4 };
    cr_assert(eq(int, mt_writer_record(MTF_REC_LOSS, &v, 1), 0));
    size_t len, off = MTF_FILE_HEADER_SIZE;
    uint8_t *buf = h_must_read(mt_writer_path(), &len);
    expect_record(buf, len, &off, MTF_REC_LOSS, "abcd", 4);
    cr_expect(eq(sz, off, len));
    free(buf);
}

Test(writer, open_moves_descriptor_high_with_cloexec_and_append)
{
    open_plain("t.mtr");
    cr_expect(eq(int, find_fd(mt_writer_path(), 0, 900), -1),
              "no low descriptor left on the trace");
    int f = find_fd(mt_writer_path(), 900, 1100);
    cr_assert(ge(int, f, 900), "trace descriptor at or above 900");
    cr_expect(eq(int, fcntl(f, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC));
    cr_expect(eq(int, fcntl(f, F_GETFL) & O_APPEND, O_APPEND));
}

Test(writer, open_reports_header_write_failure, .init = cr_redirect_stderr)
{
    char path[PATH_MAX];
    in_tmp(path, sizeof path, "t.mtr");
    inject(F_ERRNO, 1, 1, ENOSPC);
    cr_expect(lt(int, mt_writer_open(path, MTF_ORIGIN_START, 64), 0));
    cr_expect(eq(int, mt_writer_ok(), 0));
    cr_expect(eq(int, mt_writer_failed(), 1));
    expect_one_error_line(path, "No space left on device", NULL);
}

Test(writer, open_fails_when_expansion_too_long, .init = cr_redirect_stderr)
{
    /* A pattern short enough for MEMTRACE_OUTPUT whose %e copies overflow the path buffer. */
    char link[PATH_MAX];
    ssize_t k = readlink("/proc/self/exe", link, sizeof link - 1);
    cr_assert(gt(long, (long)k, 0));
    link[k] = '\0';
    size_t copies = PATH_MAX / strlen(strrchr(link, '/') + 1) + 2;
    static char pattern[3 * PATH_MAX]; /* %e is at least one byte: at most 2 * PATH_MAX */
    in_tmp(pattern, sizeof pattern, "");
    for (size_t i = 0; i < copies; i++)
        strcat(pattern, "%e");
    cr_expect(eq(int, mt_writer_open(pattern, MTF_ORIGIN_START, 64), -ENAMETOOLONG));
    cr_expect(eq(int, mt_writer_ok(), 0));
    /* With a one-letter executable name the pattern itself can fill the message line. */
    int room = strlen(pattern) + 200 < MT_LOG_LINE_MAX;
    expect_one_error_line("MEMTRACE_OUTPUT=", room ? "too long" : NULL, NULL);
}

Test(writer, open_error_message_keeps_reason_for_long_path, .init = cr_redirect_stderr)
{
    /* 2 KiB is a legal path (MEMTRACE_OUTPUT allows about 4 KiB); the message must still end
     * with why the file could not be created, not be cut inside the path. */
    static char path[PATH_MAX];
    in_tmp(path, sizeof path, "");
    for (int i = 0; i < 10; i++) {
        size_t n = strlen(path);
        memset(path + n, 'd', 200);
        path[n + 200] = '/';
        path[n + 201] = '\0';
    }
    strcat(path, "t.mtr");
    cr_expect(eq(int, mt_writer_open(path, MTF_ORIGIN_START, 64), -ENOENT));
    expect_one_error_line("No such file or directory", NULL, NULL);
}

/* ---- mt_writer_record: framing --------------------------------------------------------------- */

Test(writer, record_frames_payload_from_several_iovecs)
{
    open_plain("t.mtr");
    struct iovec a[] = { { "abc", 3 }, { "", 0 }, { "defgh", 5 } };
    cr_assert(eq(int, mt_writer_record(MTF_REC_PROCESS, a, 3), 0));

    struct iovec b[7];
    static const char seven[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    for (int i = 0; i < 7; i++)
        b[i] = (struct iovec){ (void *)(seven + 5 * i), 5 - (size_t)(i % 2) };
    char bcat[64];
    size_t blen = 0;
    for (int i = 0; i < 7; i++) {
        memcpy(bcat + blen, b[i].iov_base, b[i].iov_len);
        blen += b[i].iov_len;
    }
    cr_assert(eq(int, mt_writer_record(MTF_REC_EVENTS, b, 7), 0));

    struct iovec none[1] = { { NULL, 0 } };
    cr_assert(eq(int, mt_writer_record(MTF_REC_END, none, 0), 0), "empty payload");

    static uint8_t big[100000];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)(i * 7 + 3);
    struct iovec c[] = { { big, 4097 }, { big + 4097, sizeof big - 4097 } };
    cr_assert(eq(int, mt_writer_record(MTF_REC_MODULES, c, 2), 0));

    size_t len, off = MTF_FILE_HEADER_SIZE;
    uint8_t *buf = h_must_read(mt_writer_path(), &len);
    expect_record(buf, len, &off, MTF_REC_PROCESS, "abcdefgh", 8);
    expect_record(buf, len, &off, MTF_REC_EVENTS, bcat, (uint32_t)blen);
    expect_record(buf, len, &off, MTF_REC_END, "", 0);
    expect_record(buf, len, &off, MTF_REC_MODULES, big, sizeof big);
    cr_expect(eq(sz, off, len), "nothing after the last record");
    free(buf);
}

Test(writer, record_accepts_up_to_max_iovecs)
{
    open_plain("t.mtr");
    struct iovec v[MT_WRITER_MAX_IOV];
    char want[MT_WRITER_MAX_IOV];
    for (int i = 0; i < MT_WRITER_MAX_IOV; i++) {
        want[i] = (char)('!' + i);
        v[i] = (struct iovec){ &want[i], 1 };
    }
    cr_assert(eq(int, mt_writer_record(MTF_REC_EVENTS, v, MT_WRITER_MAX_IOV), 0));
    size_t len, off = MTF_FILE_HEADER_SIZE;
    uint8_t *buf = h_must_read(mt_writer_path(), &len);
    expect_record(buf, len, &off, MTF_REC_EVENTS, want, MT_WRITER_MAX_IOV);
    cr_expect(eq(sz, off, len));
    free(buf);
}

Test(writer, record_refuses_more_iovecs_without_writing)
{
    open_plain("t.mtr");
    struct iovec v[MT_WRITER_MAX_IOV + 1];
    for (int i = 0; i <= MT_WRITER_MAX_IOV; i++)
        v[i] = (struct iovec){ "x", 1 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, v, MT_WRITER_MAX_IOV + 1), -1));
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, v, -1), -1));
    cr_expect(eq(long, (long)file_size(mt_writer_path()), MTF_FILE_HEADER_SIZE));
    cr_expect(eq(int, mt_writer_ok(), 1), "a caller's bad call does not stop tracing");
}

Test(writer, record_refuses_payload_over_the_format_limit)
{
    open_plain("t.mtr");
    size_t n = MTF_RECORD_MAX_SIZE + 1;
    uint8_t *p = calloc(1, n);
    cr_assert(ne(ptr, p, NULL));
    struct iovec v = { p, n };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    cr_expect(eq(long, (long)file_size(mt_writer_path()), MTF_FILE_HEADER_SIZE), "nothing written");
    free(p);
}

Test(writer, record_refused_when_never_opened)
{
    inject(F_NONE, 0, 0, 0);
    struct iovec v = { "x", 1 };
    cr_expect(eq(int, mt_writer_ok(), 0));
    cr_expect(eq(int, mt_writer_record(MTF_REC_LOSS, &v, 1), -1));
    cr_expect(eq(int, writev_calls, 0));
    cr_expect(eq(str, (char *)mt_writer_path(), ""));
}

Test(writer, record_refused_after_forget)
{
    open_plain("t.mtr");
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s", mt_writer_path());
    mt_writer_forget();
    cr_expect(eq(int, mt_writer_ok(), 0));
    cr_expect(eq(int, mt_writer_failed(), 0), "forgetting is not a failure");
    cr_expect(eq(str, (char *)mt_writer_path(), ""));
    struct iovec v = { "x", 1 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_LOSS, &v, 1), -1));
    cr_expect(eq(long, (long)file_size(path), MTF_FILE_HEADER_SIZE));
    cr_expect(eq(int, find_fd(path, 0, 1100), -1), "the descriptor is closed");
}

/* ---- mt_writer_record: failures -------------------------------------------------------------- */

Test(writer, enospc_fails_record_and_stops_tracing, .init = cr_redirect_stderr)
{
    open_plain("t.mtr");
    inject(F_ERRNO, 2, 2, ENOSPC); /* the first record succeeds, the second hits a full disk */
    struct iovec v = { "0123456789abcdef", 16 };
    cr_assert(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), 0));
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    cr_expect(eq(int, mt_writer_failed(), 1));
    cr_expect(eq(int, mt_writer_ok(), 0));
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1), "later records refused");
    cr_expect(eq(int, mt_writer_record(MTF_REC_END, &v, 0), -1));
    cr_expect(eq(int, writev_calls, 2), "no write attempted after the failure");
    /* The failing record started after the header and one 16 + 16 byte record. */
    char off[32];
    snprintf(off, sizeof off, "offset %d", MTF_FILE_HEADER_SIZE + MTF_RECORD_HEADER_SIZE + 16);
    expect_one_error_line(mt_writer_path(), off, "No space left on device");
    cr_expect(eq(long, (long)file_size(mt_writer_path()),
                 MTF_FILE_HEADER_SIZE + MTF_RECORD_HEADER_SIZE + 16),
              "the file is a valid prefix");
}

Test(writer, eio_message_names_the_error, .init = cr_redirect_stderr)
{
    open_plain("t.mtr");
    inject(F_ERRNO, 1, 1, EIO);
    struct iovec v = { "abc", 3 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    char off[32];
    snprintf(off, sizeof off, "offset %d", MTF_FILE_HEADER_SIZE);
    expect_one_error_line(mt_writer_path(), off, "Input/output error");
}

Test(writer, eintr_is_retried_transparently, .init = cr_redirect_stderr)
{
    open_plain("t.mtr");
    inject(F_EINTR, 1, 3, 0); /* interrupted three times before anything was written */
    struct iovec v[] = { { "hello ", 6 }, { "world", 5 } };
    cr_expect(eq(int, mt_writer_record(MTF_REC_PROCESS, v, 2), 0));
    cr_expect(eq(int, writev_calls, 4));
    cr_expect(eq(int, mt_writer_failed(), 0));
    cr_expect(eq(int, mt_writer_ok(), 1));
    size_t len, off = MTF_FILE_HEADER_SIZE;
    uint8_t *buf = h_must_read(mt_writer_path(), &len);
    expect_record(buf, len, &off, MTF_REC_PROCESS, "hello world", 11);
    cr_expect(eq(sz, off, len));
    free(buf);
    expect_no_output();
}

Test(writer, short_write_fails_record_and_stops_tracing, .init = cr_redirect_stderr)
{
    open_plain("t.mtr");
    inject(F_HALF, 1, 1, 0);
    static const char payload[] = "0123456789abcdef0123456789abcdef";
    struct iovec v = { (void *)payload, 32 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    cr_expect(eq(int, mt_writer_failed(), 1));
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    cr_expect(eq(int, writev_calls, 1), "no attempt to finish or retry the torn record");
    char off[32];
    snprintf(off, sizeof off, "offset %d", MTF_FILE_HEADER_SIZE);
    expect_one_error_line(mt_writer_path(), off, NULL);
    cr_expect(eq(long, (long)file_size(mt_writer_path()),
                 MTF_FILE_HEADER_SIZE + (MTF_RECORD_HEADER_SIZE + 32) / 2));
}

/* ---- descriptor identity --------------------------------------------------------------------- */

static int fstat_other_inode(int f, struct stat *st)
{
    int rc = real.fstat(f, st);
    st->st_ino ^= 1; /* the program closed ours and opened another file under the number */
    return rc;
}

Test(writer, replaced_descriptor_refuses_record, .init = cr_redirect_stderr)
{
    open_plain("t.mtr");
    mt_sys.fstat = fstat_other_inode;
    inject(F_NONE, 0, 0, 0);
    struct iovec v = { "abc", 3 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    cr_expect(eq(int, writev_calls, 0), "nothing written to someone else's file");
    cr_expect(eq(int, mt_writer_failed(), 1));
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    expect_one_error_line(mt_writer_path(), NULL, NULL);
    cr_expect(eq(long, (long)file_size(mt_writer_path()), MTF_FILE_HEADER_SIZE));
}

Test(writer, replaced_descriptor_message_does_not_blame_stale_errno, .init = cr_redirect_stderr)
{
    open_plain("t.mtr");
    mt_sys.fstat = fstat_other_inode;
    struct iovec v = { "abc", 3 };
    errno = ENOENT; /* left over from the program's own last failed call */
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    static char out[4096];
    fflush(stderr);
    size_t n = fread(out, 1, sizeof out - 1, cr_get_redirected_stderr());
    out[n] = '\0';
    cr_expect(eq(ptr, strstr(out, mt_log_errno_text(ENOENT)), NULL),
              "fstat succeeded, so errno says nothing about this failure: \"%s\"", out);
}

Test(writer, closed_and_reused_descriptor_is_reopened_not_written)
{
    open_plain("t.mtr");
    int f = find_fd(mt_writer_path(), 900, 1100);
    cr_assert(ge(int, f, 900));
    char other[PATH_MAX];
    in_tmp(other, sizeof other, "program-file");
    cr_assert(eq(int, close(f), 0));
    int g = open(other, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    cr_assert(ge(int, g, 0));
    cr_assert(eq(int, dup2(g, f), f));
    cr_assert(eq(int, close(g), 0));

    struct iovec v = { "abc", 3 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), 0),
              "the trace is reopened by name and goes on");
    cr_expect(eq(long, (long)file_size(other), 0), "the program's file got no trace bytes");
    cr_expect(eq(long, (long)file_size(mt_writer_path()),
                 MTF_FILE_HEADER_SIZE + MTF_RECORD_HEADER_SIZE + 3));
    cr_expect(eq(int, mt_writer_failed(), 0));
    struct stat st;
    cr_expect(eq(int, fstat(f, &st), 0), "the program's descriptor is left open");
}

Test(writer, closed_descriptor_is_reopened)
{
    open_plain("t.mtr");
    int f = find_fd(mt_writer_path(), 900, 1100);
    cr_assert(ge(int, f, 900));
    cr_assert(eq(int, close(f), 0));
    struct iovec v = { "abc", 3 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), 0));
    cr_expect(eq(long, (long)file_size(mt_writer_path()),
                 MTF_FILE_HEADER_SIZE + MTF_RECORD_HEADER_SIZE + 3));
}

Test(writer, closed_descriptor_of_a_removed_file_stops_tracing, .init = cr_redirect_stderr)
{
    open_plain("t.mtr");
    int f = find_fd(mt_writer_path(), 900, 1100);
    cr_assert(ge(int, f, 900));
    cr_assert(eq(int, close(f), 0));
    cr_assert(eq(int, unlink(mt_writer_path()), 0));
    struct iovec v = { "abc", 3 };
    cr_expect(eq(int, mt_writer_record(MTF_REC_EVENTS, &v, 1), -1));
    cr_expect(eq(int, mt_writer_failed(), 1));
    expect_one_error_line(mt_writer_path(), "cannot be reopened", NULL);
}
