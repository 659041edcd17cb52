/*
 * The participants of one reader process of bench/chat_latency.py, in C:
 * the cheap reader (--reader c), so that the bench's floor is the server's
 * and not the reader's. The same protocol as bench/chat_readers.py's
 * WsParticipant: a WebSocket client per participant (handshake, masked
 * frames with the all-zero key, server frames unmasked), `connection` then a
 * `join`, then its participants' share of the one schedule (message k at
 * t0 + k * interval from participant k mod N, one `sendMessage` per
 * recipient in the shared harness's json.dumps form, a message's frames in
 * one write), and every delivery timed: the text carries CLOCK_MONOTONIC at
 * send ("%.6f", Python's time.monotonic()), the receiver subtracts it from
 * CLOCK_MONOTONIC taken when its read returned.
 *
 * One epoll loop, non-blocking sockets, no threads. Built at bench time
 * (bench/chat_readers.py: gcc -O2 into state/), no binary in the tree.
 *
 *   chat_reader HOST PORT ROOM TOTAL INTERVAL SECONDS DRAIN JOIN_TIMEOUT MINE LOGIN...
 *
 * MINE: comma-separated indices into the LOGIN list (all participants, in
 * order). On stdout: "joined N ERRORS FIRST-ERROR" once all joined (or the
 * join timeout passed); then it waits for "go T0 WINDOW" on stdin, runs the
 * window and prints "result SENT LATE CPU WALL ECHO STALE REFUSED STATUSES
 * ODD COUNT WAKEUPS READS SYSTEM" and COUNT lines "K LATENCY" (seconds).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

enum { CONNECTING, UPGRADING, LOGGING_IN, JOINING, JOINED, FAILED };

typedef struct {
    int fd, state, index, wantOut;
    const char *login;
    size_t loginLen;
    char *in, *out;
    size_t inLen, inCap, outLen, outCap;
    double started;
} Conn;

static Conn *conns;
static int nconns, nlogins;
static char **logins;
static const char *room, *host;
static int port, epfd;
static char window[64];
static size_t windowLen;
static double *lat;
static int *latK;
static size_t nlat, latCap;
static long echo, stale, refused, statuses, odd, wakeups, reads;
static char firstError[200];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double cpuNow(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fail(Conn *c, const char *why) {
    if (!firstError[0])
        snprintf(firstError, sizeof firstError, "%s: %s", c->login, why);
    if (c->state != FAILED && c->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->state = FAILED;
}

static void grow(char **buf, size_t *cap, size_t need) {
    if (need <= *cap)
        return;
    size_t cap2 = *cap ? *cap : 4096;
    while (cap2 < need)
        cap2 *= 2;
    *buf = realloc(*buf, cap2);
    if (!*buf) {
        perror("realloc");
        exit(2);
    }
    *cap = cap2;
}

static void watch(Conn *c, int out) {
    c->wantOut = out;
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Write what is queued; what the socket does not take waits for EPOLLOUT. */
static void flush(Conn *c) {
    size_t done = 0;
    while (done < c->outLen) {
        ssize_t n = write(c->fd, c->out + done, c->outLen - done);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            fail(c, strerror(errno));
            return;
        }
        done += n;
    }
    memmove(c->out, c->out + done, c->outLen - done);
    c->outLen -= done;
    if ((c->outLen > 0) != c->wantOut)
        watch(c, c->outLen > 0);
}

/* A client frame (FIN, opcode), masked with the all-zero key: no XOR. */
static void queueFrame(Conn *c, int opcode, const char *payload, size_t size) {
    grow(&c->out, &c->outCap, c->outLen + size + 14);
    unsigned char *p = (unsigned char *)c->out + c->outLen;
    size_t head;
    p[0] = 0x80 | opcode;
    if (size < 126) {
        p[1] = 0x80 | size;
        head = 2;
    } else if (size < 65536) {
        p[1] = 0x80 | 126;
        p[2] = size >> 8;
        p[3] = size;
        head = 4;
    } else {
        p[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            p[2 + i] = (uint64_t)size >> (56 - 8 * i);
        head = 10;
    }
    memset(p + head, 0, 4);
    memcpy(p + head + 4, payload, size);
    c->outLen += head + 4 + size;
}

static void queueText(Conn *c, const char *text) {
    queueFrame(c, 1, text, strlen(text));
}

static void record(int k, double latency) {
    if (nlat == latCap) {
        latCap = latCap ? latCap * 2 : 65536;
        lat = realloc(lat, latCap * sizeof *lat);
        latK = realloc(latK, latCap * sizeof *latK);
        if (!lat || !latK) {
            perror("realloc");
            exit(2);
        }
    }
    lat[nlat] = latency;
    latK[nlat++] = k;
}

/* A delivered chat message: `"text": "WINDOW LOGIN SENT K"`. */
static void chat(Conn *c, const char *p, size_t size, double at) {
    const char *end = p + size;
    const char *t = memmem(p, size, "\"text\":", 7);
    if (!t)
        goto bad;
    t += 7;
    if (t < end && *t == ' ')
        t++;
    if (t >= end || *t++ != '"')
        goto bad;
    if ((size_t)(end - t) <= windowLen || memcmp(t, window, windowLen) || t[windowLen] != ' ')
        goto bad;
    t += windowLen + 1;
    const char *space = memchr(t, ' ', end - t);
    if (!space)
        goto bad;
    if ((size_t)(space - t) == c->loginLen && !memcmp(t, c->login, c->loginLen)) {
        echo++;
        return;
    }
    char *after;
    double sent = strtod(space + 1, &after);
    if (after >= end || *after != ' ')
        goto bad;
    long k = strtol(after + 1, &after, 10);
    if (after >= end || *after != '"')
        goto bad;
    record((int)k, at - sent);
    return;
bad:
    stale++;
}

static void text(Conn *c, const char *p, size_t size, double at) {
    if (memmem(p, size, "\"MESSAGE\"", 9)) {
        chat(c, p, size, at);
        return;
    }
    if (memmem(p, size, "\"DataStatusEvent\"", 17)) {
        if (c->state == JOINING) {
            char op[128];
            int n = snprintf(op, sizeof op, "\"%s-join\"", c->login);
            if (memmem(p, size, op, n)) {
                if (memmem(p, size, "\"ACCEPTED\"", 10))
                    c->state = JOINED;
                else
                    fail(c, "join refused");
                return;
            }
        }
        statuses++;
        if (!memmem(p, size, "\"ACCEPTED\"", 10))
            refused++;
    } else if (memmem(p, size, "\"getUserData\"", 13)) {
        if (c->state == LOGGING_IN) {
            char join[512];
            snprintf(join, sizeof join,
                     "{\"message\": \"sendData\", \"data\": [{\"operationId\": \"%s-join\", "
                     "\"payload\": {\"command\": \"join\", \"options\": {\"name\": \"%s\", "
                     "\"record\": false}}}]}", c->login, room);
            queueText(c, join);
            c->state = JOINING;
        }
    } else if (memmem(p, size, "\"ping\"", 6)) {
        queueText(c, "{\"message\": \"pong\", \"data\": [null]}");
    }
}

/* Every whole server frame in the buffer (unmasked: a server's). */
static void frames(Conn *c, double at) {
    size_t off = 0;
    unsigned char *b = (unsigned char *)c->in;
    while (c->state != FAILED && c->inLen - off >= 2) {
        int fin = b[off] & 0x80, opcode = b[off] & 0x0F;
        uint64_t size = b[off + 1] & 0x7F;
        size_t start = off + 2;
        if (size == 126) {
            if (c->inLen - start < 2)
                break;
            size = (uint64_t)b[start] << 8 | b[start + 1];
            start += 2;
        } else if (size == 127) {
            if (c->inLen - start < 8)
                break;
            size = 0;
            for (int i = 0; i < 8; i++)
                size = size << 8 | b[start + i];
            start += 8;
        }
        if (c->inLen - start < size)
            break;
        const char *payload = c->in + start;
        off = start + size;
        if (!fin || opcode == 0)
            odd++;  /* fragments: no server of this bench sends them */
        else if (opcode == 1)
            text(c, payload, size, at);
        else if (opcode == 9)
            queueFrame(c, 10, payload, size);
        else if (opcode == 8) {
            fail(c, "closed by the server");
            return;
        }
    }
    memmove(c->in, c->in + off, c->inLen - off);
    c->inLen -= off;
}

static void readable(Conn *c) {
    for (int rounds = 0; rounds < 64 && c->state != FAILED; rounds++) {
        grow(&c->in, &c->inCap, c->inLen + 65536);
        ssize_t n = read(c->fd, c->in + c->inLen, c->inCap - c->inLen);
        double at = now();
        reads++;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                fail(c, strerror(errno));
            break;
        }
        if (n == 0) {
            fail(c, "closed");
            break;
        }
        c->inLen += n;
        if (c->state == UPGRADING) {
            char *head = memmem(c->in, c->inLen, "\r\n\r\n", 4);
            if (!head)
                continue;
            if (strncmp(c->in, "HTTP/1.1 101", 12)) {
                fail(c, "no upgrade");
                break;
            }
            size_t used = head + 4 - c->in;
            memmove(c->in, c->in + used, c->inLen - used);
            c->inLen -= used;
            char hello[256];
            snprintf(hello, sizeof hello,
                     "{\"message\": \"connection\", \"data\": [{\"appKey\": \"roomApp\", "
                     "\"clientVersion\": \"2.0\", \"custom\": {\"login\": \"%s\"}}]}",
                     c->login);
            queueText(c, hello);
            c->state = LOGGING_IN;
        }
        frames(c, at);
        if ((size_t)n < 65536)
            break;
    }
    if (c->state != FAILED && c->outLen)
        flush(c);
}

static void connectOne(Conn *c) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, host, &sa.sin_addr);
    c->started = now();
    c->state = CONNECTING;
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) {
        fail(c, strerror(errno));
        return;
    }
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    c->wantOut = 1;
}

static void connected(Conn *c) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
        fail(c, strerror(err));
        return;
    }
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n", host, port);
    grow(&c->out, &c->outCap, c->outLen + n);
    memcpy(c->out + c->outLen, req, n);
    c->outLen += n;
    c->state = UPGRADING;
    watch(c, 0);
    flush(c);
}

static void event(struct epoll_event *ev) {
    Conn *c = ev->data.ptr;
    if (c->state == FAILED)
        return;
    if (c->state == CONNECTING) {
        if (ev->events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            connected(c);
        return;
    }
    if (ev->events & (EPOLLIN | EPOLLERR | EPOLLHUP))
        readable(c);
    if (c->state != FAILED && (ev->events & EPOLLOUT) && c->outLen)
        flush(c);
}

/* The sender's message: one sendMessage per other participant, one write. */
static void sendChat(Conn *c, int k) {
    char text[160], frame[1024];
    snprintf(text, sizeof text, "%s %s %.6f %d", window, c->login, now(), k);
    for (int to = 0; to < nlogins; to++) {
        if (to == c->index)
            continue;
        int n = snprintf(frame, sizeof frame,
                         "{\"message\": \"sendData\", \"data\": [{\"operationId\": \"%s-%d-%d\", "
                         "\"payload\": {\"command\": \"sendMessage\", \"options\": {"
                         "\"roomConfig\": {\"name\": \"%s\"}, \"to\": \"%s\", \"text\": \"%s\"}}}]}",
                         c->login, k, to, room, logins[to], text);
        if (n > 0 && (size_t)n < sizeof frame)  /* names are checked short in main */
            queueFrame(c, 1, frame, n);
    }
    flush(c);
}

static int pump(int timeoutMs) {
    struct epoll_event evs[256];
    int n = epoll_wait(epfd, evs, 256, timeoutMs);
    for (int i = 0; i < n; i++)
        if (evs[i].data.ptr)
            event(&evs[i]);
    return n;
}

int main(int argc, char **argv) {
    if (argc < 11) {
        fprintf(stderr, "usage: chat_reader HOST PORT ROOM TOTAL INTERVAL SECONDS DRAIN "
                        "JOIN_TIMEOUT MINE LOGIN...\n");
        return 2;
    }
    host = argv[1];
    port = atoi(argv[2]);
    room = argv[3];
    int total = atoi(argv[4]);
    double interval = atof(argv[5]), seconds = atof(argv[6]), drain = atof(argv[7]);
    double joinTimeout = atof(argv[8]);
    logins = argv + 10;
    nlogins = argc - 10;
    /* Short names: every frame this program writes fits its fixed buffers. */
    if (strlen(room) > 64 || strlen(host) > 64)
        return 2;
    for (int i = 0; i < nlogins; i++)
        if (strlen(logins[i]) > 32)
            return 2;
    conns = calloc(nlogins, sizeof *conns);
    int *byIndex = malloc(nlogins * sizeof *byIndex);  /* login index: conn or -1 */
    for (int i = 0; i < nlogins; i++)
        byIndex[i] = -1;
    for (char *s = argv[9], *next; *s; s = next) {
        int i = strtol(s, &next, 10);
        if (next == s || i < 0 || i >= nlogins)
            return 2;
        Conn *c = &conns[nconns];
        c->fd = -1;
        c->index = i;
        c->login = logins[i];
        c->loginLen = strlen(c->login);
        byIndex[i] = nconns++;
        if (*next == ',')
            next++;
    }
    epfd = epoll_create1(EPOLL_CLOEXEC);

    /* Join: at most 10 at a time in flight, as the Python readers do. */
    double joinDeadline = now() + joinTimeout;
    int started = 0;
    while (now() < joinDeadline) {
        int inFlight = 0, done = 0;
        for (int i = 0; i < started; i++) {
            int s = conns[i].state;
            done += s == JOINED || s == FAILED;
            inFlight += s != JOINED && s != FAILED;
        }
        if (done == nconns)
            break;
        while (started < nconns && inFlight < 10) {
            connectOne(&conns[started++]);
            inFlight++;
        }
        pump(50);
    }
    int joined = 0;
    for (int i = 0; i < nconns; i++) {
        if (conns[i].state == JOINED)
            joined++;
        else if (conns[i].state != FAILED)
            fail(&conns[i], "no join in time");
    }
    printf("joined %d %d %s\n", joined, nconns - joined, firstError[0] ? firstError : "-");
    fflush(stdout);

    /* Wait for the start, reading (and answering pings) meanwhile. */
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, 0, &ev);
    char line[256];
    size_t lineLen = 0;
    double t0 = 0, waitUntil = now() + 600;
    while (!t0 && now() < waitUntil) {
        struct epoll_event evs[256];
        int n = epoll_wait(epfd, evs, 256, 1000);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr) {
                event(&evs[i]);
                continue;
            }
            ssize_t r = read(0, line + lineLen, sizeof line - 1 - lineLen);
            if (r <= 0)
                return 1;  /* the coordinator is gone */
            lineLen += r;
            line[lineLen] = 0;
            if (strchr(line, '\n')) {
                if (sscanf(line, "go %lf %63s", &t0, window) != 2)
                    return 2;
                windowLen = strlen(window);
            }
        }
    }
    if (!t0)
        return 1;
    epoll_ctl(epfd, EPOLL_CTL_DEL, 0, NULL);

    /* The window: my share of the schedule, on an absolute timer. */
    int *mine = malloc(total * sizeof *mine), nmine = 0;
    for (int k = 0; k < total; k++)
        if (byIndex[k % nlogins] >= 0)
            mine[nmine++] = k;
    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    static Conn timerConn;  /* a marker: events with it are the timer's */
    timerConn.state = JOINED;
    struct epoll_event tev = {.events = EPOLLIN, .data.ptr = &timerConn};
    epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &tev);
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    double cpu0 = cpuNow(), late = 0;
    wakeups = reads = 0;  /* the window's only: not the joins' room events */
    long expected = (long)total * nconns - nmine;
    int next = 0, sent = 0;
    double end = t0 + seconds, stop = end + drain;
    for (;;) {
        double t = now();
        while (next < nmine && t0 + mine[next] * interval <= t) {
            int k = mine[next++];
            double behind = t - (t0 + k * interval);
            if (behind > late)
                late = behind;
            Conn *c = &conns[byIndex[k % nlogins]];
            if (c->state == JOINED) {
                sendChat(c, k);
                sent++;
            }
            t = now();
        }
        if (t > t0 + 2 * seconds + 5)
            next = nmine;  /* bounded in time too */
        if (t >= stop || (t >= end && next == nmine && (long)nlat >= expected))
            break;
        if (next < nmine) {
            double at = t0 + mine[next] * interval;
            struct itimerspec its = {.it_value = {.tv_sec = (time_t)at,
                                                  .tv_nsec = (long)((at - (time_t)at) * 1e9)}};
            if (!its.it_value.tv_sec && !its.it_value.tv_nsec)
                its.it_value.tv_nsec = 1;
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
        }
        struct epoll_event evs[256];
        int n = epoll_wait(epfd, evs, 256, next < nmine ? 1000 : 50);
        wakeups++;
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &timerConn) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    return 1;
            } else {
                event(&evs[i]);
            }
        }
    }
    double cpu = cpuNow() - cpu0, wall = now() - t0;
    getrusage(RUSAGE_SELF, &ru1);
    double system = ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec
                    + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) * 1e-6;
    printf("result %d %.6f %.6f %.6f %ld %ld %ld %ld %ld %zu %ld %ld %.6f\n", sent, late, cpu,
           wall, echo, stale, refused, statuses, odd, nlat, wakeups, reads, system);
    for (size_t i = 0; i < nlat; i++)
        printf("%d %.6f\n", latK[i], lat[i]);
    fflush(stdout);
    for (int i = 0; i < nconns; i++) {
        Conn *c = &conns[i];
        if (c->state == JOINED) {
            c->outLen = 0;
            queueFrame(c, 8, "", 0);
            flush(c);
        }
        if (c->fd >= 0)
            close(c->fd);
    }
    return 0;
}
