/* scripts/bench.d/sink.c — the remote servers of `scripts/bench --outbound`:
 * one process, one thread, epoll, listening on several loopback addresses,
 * speaking enough ESMTP for tern's and Postfix's SMTP clients (EHLO with
 * PIPELINING, 8BITMIME and SIZE; HELO, MAIL, RCPT, DATA with dot-unstuffing,
 * RSET, NOOP, QUIT). It stores no mail: for every recipient of every message
 * it took it writes "A <recipient> <message-id>" to its log, so that the bench
 * can prove each message arrived exactly once, and it refuses a share of RCPT
 * commands with 451 4.3.0 (each RCPT drawn afresh, so a retry can succeed),
 * logging "R <recipient>". Replies to pipelined commands go out together.
 * Everything a client can make it hold is bounded: a command line (longer
 * ones are answered 500 and skipped), the recipients of a transaction, the
 * replies waiting to be written (reading stops until they are), the
 * connections (beyond MAX_CONN a new one gets 421).
 *
 * Built by the bench at run time (cc -O2). Usage:
 *   sink --port P --log FILE [--refuse PERMILLE] [--user NAME] ADDR...
 * On SIGTERM or SIGINT it flushes the log, prints "sink: accepted=N
 * refused=N connections=N" to stderr and exits 0. */

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_LISTEN 64
#define MAX_CONN 4096
#define LINE_MAX_LEN 1000   /* RFC 5321 §4.5.3.1.6: 1,000 octets with CRLF */
#define ADDR_MAX 256
#define MAX_RCPT 100
#define OUT_MAX 16384       /* replies waiting; reading pauses above OUT_HIGH */
#define OUT_HIGH 8192
#define MSGID_MAX 256
#define IN_MAX 16384

enum state { CMD, DATA_HEAD, DATA_BODY, CLOSING };

struct conn {
    int fd;
    enum state st;
    int mail;                       /* MAIL given */
    int nrcpt;                      /* accepted recipients */
    int refused_any;
    char rcpt[MAX_RCPT][ADDR_MAX];
    char msgid[MSGID_MAX];
    char line[LINE_MAX_LEN + 1];
    size_t len;
    int overlong;                   /* the current line passed LINE_MAX_LEN */
    char in[IN_MAX];                /* read, not yet taken by the line reader */
    size_t inlen;
    char out[OUT_MAX];
    size_t outlen;
};

static volatile sig_atomic_t stop;
static unsigned long accepted, refused, connections, messages;
static unsigned permille;
static uint64_t rng;
static FILE *logf;
static int log_dirty;
static int epfd;
static int listeners[MAX_LISTEN];
static int nlisten;

static void on_signal(int s) { (void)s; stop = 1; }

static uint64_t next_rand(void) {
    /* xorshift64* */
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return rng * 0x2545F4914F6CDD1DULL;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void reply(struct conn *c, const char *s) {
    size_t n = strlen(s);
    if (c->outlen + n > OUT_MAX) {
        /* Cannot happen while reading pauses at OUT_HIGH (a reply is short
         * and at most one per input line of a pipelined group is queued
         * before the next check); close rather than overrun. */
        c->st = CLOSING;
        return;
    }
    memcpy(c->out + c->outlen, s, n);
    c->outlen += n;
}

static void set_events(struct conn *c) {
    struct epoll_event ev = {0};
    /* No EPOLLIN while the replies are backed up or after QUIT: input then
     * waits in the socket (level-triggered, it would wake us for nothing). */
    int reading = c->outlen < OUT_HIGH && c->st != CLOSING;
    ev.events = (reading ? EPOLLIN : 0) | (c->outlen > 0 ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

static void close_conn(struct conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
    connections--;
}

/* Writes what it can; 0 when the connection is gone. */
static int flush_out(struct conn *c) {
    while (c->outlen > 0) {
        ssize_t w = write(c->fd, c->out, c->outlen);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            if (errno == EINTR)
                continue;
            return 0;
        }
        memmove(c->out, c->out + w, c->outlen - (size_t)w);
        c->outlen -= (size_t)w;
    }
    if (c->st == CLOSING && c->outlen == 0)
        return 0;
    return 1;
}

static void reset_tx(struct conn *c) {
    c->mail = 0;
    c->nrcpt = 0;
    c->refused_any = 0;
    c->msgid[0] = 0;
}

/* The address inside <...> after the colon of "MAIL FROM:" / "RCPT TO:". */
static int path_arg(const char *args, char *out, size_t cap) {
    const char *lt = strchr(args, '<'), *gt;
    if (!lt || !(gt = strchr(lt, '>')))
        return 0;
    size_t n = (size_t)(gt - lt - 1);
    if (n >= cap)
        return 0;
    memcpy(out, lt + 1, n);
    out[n] = 0;
    for (size_t i = 0; i < n; i++)
        if (out[i] == ' ' || (unsigned char)out[i] < 32)
            return 0;
    return 1;
}

static void command(struct conn *c, char *l) {
    if (c->overlong) {
        reply(c, "500 5.5.2 line too long\r\n");
        return;
    }
    if (!strncasecmp(l, "EHLO ", 5) || !strcasecmp(l, "EHLO")) {
        reset_tx(c);
        reply(c, "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 52428800\r\n"
                 "250 ENHANCEDSTATUSCODES\r\n");
    } else if (!strncasecmp(l, "HELO ", 5)) {
        reset_tx(c);
        reply(c, "250 sink.test\r\n");
    } else if (!strncasecmp(l, "MAIL FROM:", 10)) {
        char a[ADDR_MAX];
        if (c->mail)
            reply(c, "503 5.5.1 nested MAIL command\r\n");
        else if (!path_arg(l + 10, a, sizeof a))
            reply(c, "501 5.1.7 bad sender address syntax\r\n");
        else {
            c->mail = 1;
            reply(c, "250 2.1.0 Ok\r\n");
        }
    } else if (!strncasecmp(l, "RCPT TO:", 8)) {
        char a[ADDR_MAX];
        if (!c->mail)
            reply(c, "503 5.5.1 need MAIL command\r\n");
        else if (!path_arg(l + 8, a, sizeof a) || !a[0])
            reply(c, "501 5.1.3 bad recipient address syntax\r\n");
        else if (c->nrcpt >= MAX_RCPT)
            reply(c, "452 4.5.3 too many recipients\r\n");
        else if (permille && next_rand() % 1000 < permille) {
            refused++;
            fprintf(logf, "R %s\n", a);
            log_dirty = 1;
            reply(c, "451 4.3.0 bench sink: try again later\r\n");
        } else {
            memcpy(c->rcpt[c->nrcpt++], a, strlen(a) + 1);
            reply(c, "250 2.1.5 Ok\r\n");
        }
    } else if (!strcasecmp(l, "DATA")) {
        if (!c->mail)
            reply(c, "503 5.5.1 need MAIL command\r\n");
        else if (c->nrcpt == 0)
            reply(c, "554 5.5.1 no valid recipients\r\n");
        else {
            c->st = DATA_HEAD;
            c->msgid[0] = 0;
            reply(c, "354 End data with <CR><LF>.<CR><LF>\r\n");
        }
    } else if (!strcasecmp(l, "RSET")) {
        reset_tx(c);
        reply(c, "250 2.0.0 Ok\r\n");
    } else if (!strncasecmp(l, "NOOP", 4)) {
        reply(c, "250 2.0.0 Ok\r\n");
    } else if (!strcasecmp(l, "QUIT")) {
        reply(c, "221 2.0.0 Bye\r\n");
        c->st = CLOSING;
    } else {
        reply(c, "502 5.5.2 command not recognized\r\n");
    }
}

static void end_of_data(struct conn *c) {
    char r[64];
    messages++;
    for (int i = 0; i < c->nrcpt; i++) {
        fprintf(logf, "A %s %s\n", c->rcpt[i], c->msgid[0] ? c->msgid : "-");
        accepted++;
    }
    log_dirty = 1;
    snprintf(r, sizeof r, "250 2.0.0 Ok: queued as %lu\r\n", messages);
    reply(c, r);
    reset_tx(c);
    c->st = CMD;
}

/* One line of the message (dot-unstuffed), or its end. */
static void data_line(struct conn *c, char *l) {
    if (!c->overlong && l[0] == '.' && l[1] == 0) {
        end_of_data(c);
        return;
    }
    if (l[0] == '.')
        l++;
    if (c->st != DATA_HEAD)
        return;
    if (l[0] == 0) {
        c->st = DATA_BODY;
    } else if (!c->msgid[0] && !strncasecmp(l, "Message-ID:", 11)) {
        char *v = l + 11;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t n = strcspn(v, " \t");
        if (n >= MSGID_MAX)
            n = MSGID_MAX - 1;
        memcpy(c->msgid, v, n);
        c->msgid[n] = 0;
    }
}

/* A complete line (CRLF or LF removed) from the client. */
static void line(struct conn *c) {
    c->line[c->len] = 0;
    if (c->len > 0 && c->line[c->len - 1] == '\r')
        c->line[--c->len] = 0;
    if (c->st == CMD)
        command(c, c->line);
    else if (c->st == DATA_HEAD || c->st == DATA_BODY)
        data_line(c, c->line);
    c->len = 0;
    c->overlong = 0;
}

/* Feeds the buffered input to the line reader while the replies waiting
 * stay under OUT_HIGH; returns how many octets it took. */
static size_t consume(struct conn *c) {
    size_t i = 0;
    while (i < c->inlen && c->outlen < OUT_HIGH && c->st != CLOSING) {
        char ch = c->in[i++];
        if (ch == '\n')
            line(c);
        else if (c->len < LINE_MAX_LEN)
            c->line[c->len++] = ch;
        else
            c->overlong = 1;
    }
    memmove(c->in, c->in + i, c->inlen - i);
    c->inlen -= i;
    return i;
}

/* Reads and answers what the client sent, until the socket is drained or
 * the replies waiting fill up (then it waits for EPOLLOUT). */
static void readable(struct conn *c) {
    for (;;) {
        consume(c);
        if (c->st == CLOSING)
            break;
        if (c->outlen >= OUT_HIGH) {
            if (!flush_out(c)) {
                close_conn(c);
                return;
            }
            if (c->outlen >= OUT_HIGH)
                break;
            continue;
        }
        ssize_t n = read(c->fd, c->in + c->inlen, IN_MAX - c->inlen);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            close_conn(c);
            return;
        }
        if (n == 0) {
            close_conn(c);
            return;
        }
        c->inlen += (size_t)n;
    }
    if (!flush_out(c)) {
        close_conn(c);
        return;
    }
    set_events(c);
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return; /* EAGAIN, or out of descriptors: try at the next event */
        }
        if (connections >= MAX_CONN) {
            static const char busy[] = "421 4.3.2 too many connections\r\n";
            if (write(fd, busy, sizeof busy - 1) < 0) {
            }
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->st = CMD;
        connections++;
        reply(c, "220 sink.test ESMTP bench sink\r\n");
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        if (!flush_out(c)) {
            close_conn(c);
            continue;
        }
        set_events(c);
    }
}

static int is_listener(void *p) {
    intptr_t v = (intptr_t)p;
    return v >= 0 && v < nlisten;
}

int main(int argc, char **argv) {
    int port = 0;
    const char *logpath = NULL, *user = NULL;
    const char *addrs[MAX_LISTEN];
    int naddr = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--log") && i + 1 < argc)
            logpath = argv[++i];
        else if (!strcmp(argv[i], "--refuse") && i + 1 < argc)
            permille = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--user") && i + 1 < argc)
            user = argv[++i];
        else if (argv[i][0] != '-' && naddr < MAX_LISTEN)
            addrs[naddr++] = argv[i];
        else {
            fprintf(stderr, "usage: sink --port P --log FILE [--refuse PERMILLE] [--user NAME] ADDR...\n");
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || !logpath || naddr == 0 || permille > 1000) {
        fprintf(stderr, "usage: sink --port P --log FILE [--refuse PERMILLE] [--user NAME] ADDR...\n");
        return 2;
    }
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ ((uint64_t)getpid() << 40) ^ 0x9E3779B97F4A7C15ULL;
    if (!rng)
        rng = 1;

    logf = fopen(logpath, "a");
    if (!logf)
        die(logpath);
    setvbuf(logf, NULL, _IOFBF, 1 << 20);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        die("epoll_create1");
    for (int i = 0; i < naddr; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        if (inet_pton(AF_INET, addrs[i], &sa.sin_addr) != 1) {
            fprintf(stderr, "sink: not an IPv4 address: %s\n", addrs[i]);
            return 2;
        }
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 1024) < 0)
            die(addrs[i]);
        listeners[nlisten] = fd;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = (void *)(intptr_t)nlisten};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
        nlisten++;
    }
    if (user) {
        struct passwd *pw = getpwnam(user);
        if (!pw || setgroups(0, NULL) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0)
            die("dropping privileges");
    }
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    fprintf(stderr, "sink: ready on %d address(es), port %d, refusing %u per mille\n", naddr, port, permille);

    struct epoll_event evs[256];
    while (!stop) {
        int n = epoll_wait(epfd, evs, 256, 1000);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            void *p = evs[i].data.ptr;
            if (is_listener(p)) {
                accept_all(listeners[(intptr_t)p]);
                continue;
            }
            struct conn *c = p;
            if (evs[i].events & EPOLLOUT) {
                if (!flush_out(c)) {
                    close_conn(c);
                    continue;
                }
            }
            /* Also after EPOLLOUT: input may wait in the buffer while the
             * replies drained. */
            readable(c);
        }
        if (log_dirty) {
            fflush(logf);
            log_dirty = 0;
        }
    }
    fflush(logf);
    fprintf(stderr, "sink: accepted=%lu refused=%lu messages=%lu connections=%lu\n", accepted, refused,
            messages, connections);
    return 0;
}
