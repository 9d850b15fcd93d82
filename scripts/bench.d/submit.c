/* scripts/bench.d/submit.c — the load generator of `scripts/bench --submission`:
 * smtp-source has no TLS and no AUTH, so this does what a mail program does on
 * port 587, with OpenSSL, one thread per session:
 *
 *     220 <- ; EHLO ; STARTTLS ; TLS handshake ; EHLO ; AUTH PLAIN ;
 *     then per message MAIL FROM ; RCPT TO ; DATA ; the message ; "." ;
 *     finally QUIT
 *
 * -r (reuse): each session sends messages until all N are claimed; without
 * it every message gets a new connection (TCP, full TLS handshake — no
 * session resumption — and AUTH). No pipelining: one command, one reply.
 * Per message it records, like latency.c,
 *
 *     <start, seconds, CLOCK_MONOTONIC> <latency, seconds> <reply code>
 *
 * from MAIL FROM written to the reply to the end of DATA read (a message
 * refused earlier is recorded with that reply's code; one lost to a broken
 * connection with code 0), one line per message, to -o FILE at the end.
 * A session that cannot be opened (e.g. AUTH answered 454, "busy") is tried
 * again for the same message after 20 ms (at most 200 times per thread);
 * the last line on stderr counts them:
 *     submit: ok=N failed=N session_retries=N auth_454=N
 * -S: session k binds to 127.0.(100 + k/250).(k%250 + 1) before connecting,
 * so the server sees SESSIONS clients rather than one. Exit 0 when every
 * message got a 250.
 *
 *   submit -s SESSIONS -m N -l SIZE -u USER -p PASS -f FROM -t RCPT
 *          [-r] [-S] [-o FILE] [-H HELO] IP:PORT
 * Build: cc -O2 -pthread -o submit submit.c -lssl -lcrypto
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int sessions = 1, total = 1, size = 4096, reuse, spread;
static const char *user, *pass, *from, *rcpt, *helo = "submit.client.test", *outfile;
static struct sockaddr_in addr;
static SSL_CTX *ctx;
static atomic_int next_msg, retries, auth_refused;
static char *auth_line; /* "AUTH PLAIN base64\r\n" */

struct rec {
    double start, lat;
    int code;
};
static struct rec *recs;

struct conn {
    int fd;
    SSL *ssl;
    char buf[16384];
    size_t len;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int conn_write(struct conn *c, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = c->ssl ? SSL_write(c->ssl, p, (int)n) : write(c->fd, p, n);
        if (w <= 0) {
            if (!c->ssl && w < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int conn_printf(struct conn *c, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0 || n >= (int)sizeof line)
        return -1;
    return conn_write(c, line, (size_t)n);
}

/* One whole reply (all its lines); returns its code, or -1. */
static int read_reply(struct conn *c)
{
    for (;;) {
        /* Complete lines in the buffer: look for the last one ("NNN "). */
        size_t start = 0;
        for (size_t i = 0; i < c->len; i++) {
            if (c->buf[i] != '\n')
                continue;
            size_t linelen = i + 1 - start;
            if (linelen >= 4 && c->buf[start + 3] != '-') {
                int code = atoi(c->buf + start);
                memmove(c->buf, c->buf + i + 1, c->len - i - 1);
                c->len -= i + 1;
                return code;
            }
            start = i + 1;
        }
        if (c->len == sizeof c->buf) {
            /* A long multi-line reply: drop the complete lines. */
            if (start == 0)
                return -1;
            memmove(c->buf, c->buf + start, c->len - start);
            c->len -= start;
        }
        ssize_t r = c->ssl ? SSL_read(c->ssl, c->buf + c->len, (int)(sizeof c->buf - c->len))
                           : read(c->fd, c->buf + c->len, sizeof c->buf - c->len);
        if (r <= 0) {
            if (!c->ssl && r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        c->len += (size_t)r;
    }
}

static void conn_close(struct conn *c)
{
    if (c->ssl) {
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->len = 0;
}

/* Connect, STARTTLS, AUTH: 0 when ready for MAIL, else -1 (closed). */
static int conn_open(struct conn *c, int k)
{
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    c->ssl = NULL;
    c->len = 0;
    if (c->fd < 0)
        return -1;
    struct timeval tv = {60, 0};
    setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (spread) {
        /* Session k comes from 127.0.(100 + k/250).(k%250 + 1): c clients, as c
         * users' machines would be, not c sessions of one address. */
        struct sockaddr_in src = {.sin_family = AF_INET};
        src.sin_addr.s_addr = htonl(0x7f000000u | (100u + (unsigned)k / 250) << 8 | (1u + (unsigned)k % 250));
        if (bind(c->fd, (struct sockaddr *)&src, sizeof src) < 0)
            goto fail;
    }
    if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        goto fail;
    if (read_reply(c) != 220)
        goto fail;
    if (conn_printf(c, "EHLO %s\r\n", helo) || read_reply(c) != 250)
        goto fail;
    if (conn_printf(c, "STARTTLS\r\n") || read_reply(c) != 220)
        goto fail;
    c->ssl = SSL_new(ctx);
    if (!c->ssl)
        goto fail;
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, "localhost");
    if (SSL_connect(c->ssl) != 1)
        goto fail;
    if (conn_printf(c, "EHLO %s\r\n", helo) || read_reply(c) != 250)
        goto fail;
    if (conn_write(c, auth_line, strlen(auth_line)))
        goto fail;
    int code = read_reply(c);
    if (code != 235) {
        if (code == 454)
            atomic_fetch_add(&auth_refused, 1);
        goto fail;
    }
    return 0;
fail:
    conn_close(c);
    return -1;
}

static void make_message(int i, char *out, size_t cap, size_t *len)
{
    int n = snprintf(out, cap,
                     "From: Bench <%s>\r\nTo: <%s>\r\nSubject: submission %d\r\n"
                     "Date: Sun, 6 Dec 2026 12:00:00 +0000\r\n"
                     "Message-ID: <sub%d.%ld@bench.test>\r\nMIME-Version: 1.0\r\n"
                     "Content-Type: text/plain; charset=us-ascii\r\n\r\n",
                     from, rcpt, i, i, (long)getpid());
    size_t at = (size_t)n;
    static const char line[] = "The quick brown fox jumps over the lazy dog, again and again and aga\r\n";
    while (at + sizeof line - 1 <= (size_t)size && at + sizeof line + 8 < cap) {
        memcpy(out + at, line, sizeof line - 1);
        at += sizeof line - 1;
    }
    memcpy(out + at, ".\r\n", 3);
    *len = at + 3;
}

/* One transaction on an open connection; fills r. Returns 0 if the
 * connection can go on. */
static int transaction(struct conn *c, int i, struct rec *r, char *msg, size_t cap)
{
    size_t len;
    make_message(i, msg, cap, &len);
    r->start = now();
    r->code = 0;
    int code;
    if (conn_printf(c, "MAIL FROM:<%s>\r\n", from) || (code = read_reply(c)) < 0)
        goto broken;
    if (code != 250) {
        r->code = code;
        goto refused;
    }
    if (conn_printf(c, "RCPT TO:<%s>\r\n", rcpt) || (code = read_reply(c)) < 0)
        goto broken;
    if (code != 250) {
        r->code = code;
        goto refused;
    }
    if (conn_printf(c, "DATA\r\n") || (code = read_reply(c)) < 0)
        goto broken;
    if (code != 354) {
        r->code = code;
        goto refused;
    }
    if (conn_write(c, msg, len) || (code = read_reply(c)) < 0)
        goto broken;
    r->code = code;
    r->lat = now() - r->start;
    return 0;
refused:
    r->lat = now() - r->start;
    if (conn_printf(c, "RSET\r\n") || read_reply(c) != 250)
        return -1;
    return 0;
broken:
    r->lat = now() - r->start;
    r->code = 0;
    return -1;
}

static void *session(void *arg)
{
    int k = (int)(long)arg;
    size_t cap = (size_t)size + 4096;
    char *msg = malloc(cap);
    struct conn *c = calloc(1, sizeof *c);
    c->fd = -1;
    int open = 0, failures = 0;
    for (;;) {
        int i = atomic_fetch_add(&next_msg, 1);
        if (i >= total)
            break;
        struct rec *r = &recs[i];
        /* A session that cannot be opened (refused, or AUTH answered 454
         * "busy, try again") is tried again for the same message, a little
         * later, as a mail program would; bounded. */
        while (!open) {
            if (conn_open(c, k) == 0) {
                open = 1;
                break;
            }
            atomic_fetch_add(&retries, 1);
            if (++failures > 200)
                break;
            usleep(20000);
        }
        if (!open) {
            r->code = 0;
            break;
        }
        if (transaction(c, i, r, msg, cap) < 0) {
            conn_close(c);
            open = 0;
            continue;
        }
        if (!reuse) {
            if (conn_printf(c, "QUIT\r\n") == 0)
                read_reply(c);
            conn_close(c);
            open = 0;
        }
    }
    if (open) {
        if (conn_printf(c, "QUIT\r\n") == 0)
            read_reply(c);
        conn_close(c);
    }
    free(msg);
    free(c);
    return NULL;
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static char *base64(const unsigned char *in, size_t n)
{
    char *out = malloc(4 * ((n + 2) / 3) + 1), *o = out;
    for (size_t i = 0; i < n; i += 3) {
        unsigned v = in[i] << 16 | (i + 1 < n ? in[i + 1] << 8 : 0) | (i + 2 < n ? in[i + 2] : 0);
        *o++ = B64[v >> 18 & 63];
        *o++ = B64[v >> 12 & 63];
        *o++ = i + 1 < n ? B64[v >> 6 & 63] : '=';
        *o++ = i + 2 < n ? B64[v & 63] : '=';
    }
    *o = 0;
    return out;
}

static void usage(void)
{
    fprintf(stderr, "usage: submit -s SESSIONS -m N -l SIZE -u USER -p PASS -f FROM -t RCPT "
                    "[-r] [-S] [-o FILE] [-H HELO] IP:PORT\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int opt;
    while ((opt = getopt(argc, argv, "s:m:l:u:p:f:t:ro:H:S")) != -1) {
        switch (opt) {
        case 's': sessions = atoi(optarg); break;
        case 'm': total = atoi(optarg); break;
        case 'l': size = atoi(optarg); break;
        case 'u': user = optarg; break;
        case 'p': pass = optarg; break;
        case 'f': from = optarg; break;
        case 't': rcpt = optarg; break;
        case 'r': reuse = 1; break;
        case 'o': outfile = optarg; break;
        case 'H': helo = optarg; break;
        case 'S': spread = 1; break;
        default: usage();
        }
    }
    if (optind != argc - 1 || !user || !pass || !from || !rcpt || sessions < 1 || sessions > 1000 ||
        total < 1 || size < 512 || size > (64 << 20))
        usage();
    char *colon = strrchr(argv[optind], ':');
    if (!colon)
        usage();
    *colon = 0;
    addr.sin_family = AF_INET;
    addr.sin_port = htons((unsigned short)atoi(colon + 1));
    if (inet_pton(AF_INET, argv[optind], &addr.sin_addr) != 1)
        usage();

    /* AUTH PLAIN: "\0user\0pass". */
    size_t ul = strlen(user), pl = strlen(pass);
    unsigned char *plain = malloc(ul + pl + 2);
    plain[0] = 0;
    memcpy(plain + 1, user, ul);
    plain[ul + 1] = 0;
    memcpy(plain + ul + 2, pass, pl);
    char *b64 = base64(plain, ul + pl + 2);
    auth_line = malloc(strlen(b64) + 16);
    sprintf(auth_line, "AUTH PLAIN %s\r\n", b64);

    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        ERR_print_errors_fp(stderr);
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Every new connection pays for a full handshake, as a mail program's
     * first send does. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET);

    recs = calloc((size_t)total, sizeof *recs);
    if (sessions > total)
        sessions = total;
    pthread_t *th = calloc((size_t)sessions, sizeof *th);
    for (int i = 0; i < sessions; i++) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setstacksize(&at, 256 << 10);
        if (pthread_create(&th[i], &at, session, (void *)(long)i) != 0) {
            perror("pthread_create");
            return 1;
        }
    }
    for (int i = 0; i < sessions; i++)
        pthread_join(th[i], NULL);

    int ok = 0, bad = 0;
    FILE *out = outfile ? fopen(outfile, "w") : NULL;
    for (int i = 0; i < total; i++) {
        if (recs[i].code == 250)
            ok++;
        else
            bad++;
        if (out && recs[i].start > 0)
            fprintf(out, "%.6f %.6f %d\n", recs[i].start, recs[i].lat, recs[i].code);
    }
    if (out)
        fclose(out);
    fprintf(stderr, "submit: ok=%d failed=%d session_retries=%d auth_454=%d\n", ok, bad,
            atomic_load(&retries), atomic_load(&auth_refused));
    return bad ? 1 : 0;
}
