/* scripts/bench.d/latency.c — an LD_PRELOAD shim for Postfix's smtp-source
 * that times every SMTP transaction from the client's side, without touching
 * the server under test.
 *
 * smtp-source is a single-threaded event loop that talks to each session with
 * plain read(2)/write(2) and never pipelines, so each reply arrives on its own
 * and each command is one write. Per file descriptor this shim notes the time
 * of the write that starts with "MAIL FROM:", watches for the "354" reply to
 * DATA, and when the next reply arrives (the one to the end of the message
 * data: "250 ... queued") records
 *
 *     <start, seconds, CLOCK_MONOTONIC> <latency, seconds> <reply code>
 *
 * one line per transaction, to the file named by $BENCH_LATENCY_FILE
 * (written at exit). A transaction refused before DATA (4xx/5xx to MAIL or
 * RCPT) is recorded with that code. Build:
 *     cc -O2 -shared -fPIC -o latency.so latency.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_FD 65536

enum { IDLE = 0, IN_ENVELOPE = 1, IN_DATA = 2 };

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_write)(int, const void *, size_t);
static unsigned char state[MAX_FD];
static double started[MAX_FD];
static FILE *out;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

__attribute__((constructor)) static void init(void)
{
    real_read = (ssize_t (*)(int, void *, size_t))dlsym(RTLD_NEXT, "read");
    real_write = (ssize_t (*)(int, const void *, size_t))dlsym(RTLD_NEXT, "write");
    const char *path = getenv("BENCH_LATENCY_FILE");
    if (path && *path) {
        out = fopen(path, "w");
        if (out)
            setvbuf(out, NULL, _IOFBF, 1 << 20);
    }
}

__attribute__((destructor)) static void fini(void)
{
    if (out) {
        fclose(out);
        out = NULL;
    }
}

static void record(int fd, const char *reply, ssize_t n)
{
    double t = now();
    char code[4] = "???";
    if (n >= 3)
        memcpy(code, reply, 3);
    if (out)
        fprintf(out, "%.6f %.6f %s\n", started[fd], t - started[fd], code);
    state[fd] = IDLE;
}

ssize_t write(int fd, const void *buf, size_t count)
{
    if (!real_write)
        init();
    if (fd >= 0 && fd < MAX_FD && count >= 10 && memcmp(buf, "MAIL FROM:", 10) == 0) {
        started[fd] = now();
        state[fd] = IN_ENVELOPE;
    }
    return real_write(fd, buf, count);
}

ssize_t read(int fd, void *buf, size_t count)
{
    if (!real_read)
        init();
    ssize_t n = real_read(fd, buf, count);
    if (n > 0 && fd >= 0 && fd < MAX_FD && state[fd] != IDLE) {
        const char *reply = buf;
        if (state[fd] == IN_ENVELOPE) {
            if (n >= 3 && memcmp(reply, "354", 3) == 0)
                state[fd] = IN_DATA;
            else if (reply[0] == '4' || reply[0] == '5')
                record(fd, reply, n);
        } else {
            record(fd, reply, n);
        }
    }
    return n;
}
