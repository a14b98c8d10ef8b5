/*
 * conn.c - resolve and connect on the loop without ever blocking it; see
 * conn.h for the contract.
 *
 * Resolving. getaddrinfo() blocks for as long as DNS takes (seconds for a
 * dead server), so a host name is looked up on a resolver thread of its
 * own, started per lookup: lookups are rare (a connect attempt, and those
 * back off after failures), so a pool would only add a queue. The thread
 * calls the resolver (getaddrinfo, or a test's fake), then posts the result
 * to the loop. A literal address needs no lookup: it is parsed on the loop
 * thread with AI_NUMERICHOST and delivered by a timer due now, so callbacks
 * always come from the loop's dispatch.
 *
 * Cancelling a lookup whose thread still runs. The thread may be stuck in
 * DNS for seconds, and the loop may be freed meanwhile (engine shutdown),
 * so cancel never joins: the thread is detached, and the lookup belongs to
 * whichever side finishes last, decided under one lock. If the thread
 * finishes after the cancel it frees everything itself and never touches
 * the loop; the cancel has already released the loop's hold.
 *
 * Connecting. Each address in turn: a non-blocking connect, a watch for
 * writability and a timer for the per-address timeout; on failure the next
 * address, and when none is left the last address's error.
 *
 * Threads: the loop thread, plus resolver threads that touch only their
 * own md_resolve (under res_lock) and md_loop_post().
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "conn.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { CONNECT_TIMEOUT_MS = 3000, HOST_MAX = 256 };

static md_conn_resolver resolver = getaddrinfo;
/* Guards the hand-off between a resolver thread and a cancel. */
static pthread_mutex_t res_lock = PTHREAD_MUTEX_INITIALIZER;

void md_conn_set_resolver(md_conn_resolver fn)
{
    resolver = fn ? fn : getaddrinfo;
}

/* {===== resolve ===== */

/* Owned by the conn layer from md_resolve_start to its callback (see the
 * opening comment for a cancelled lookup whose thread still runs). */
struct md_resolve {
    md_completion done; /* posted by the thread */
    md_loop *loop;
    md_resolve_fn fn;
    void *ud;
    md_timer *timer; /* literal address: delivers on the next iteration */
    bool threaded;
    bool finished;  /* the thread has its result (res_lock) */
    bool cancelled; /* the owner gave up (res_lock) */
    md_conn_resolver resolve;
    int delay_ms; /* MOONDOG_TEST_DNS_DELAY_MS: a slow resolver, for tests */
    struct addrinfo hints;
    char host[HOST_MAX], service[16];
    struct addrinfo *res;
    int err;
};

static int from_gai(int rc, int err)
{
    if (rc == 0)
        return 0;
    return rc == EAI_SYSTEM && err ? -err : -MD_CONN_EDNS;
}

static void make_hints(struct addrinfo *h, int socktype, bool passive)
{
    *h = (struct addrinfo){
        .ai_family = AF_UNSPEC,
        .ai_socktype = socktype,
        .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0),
    };
}

static const char *bind_host(const char *host, bool passive)
{
    if (passive && (!host || !host[0] || strcmp(host, "*") == 0))
        return NULL;
    return host;
}

int md_conn_resolve_literal(const char *host, int port, int socktype, bool passive,
                            struct addrinfo **res)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints;
    make_hints(&hints, socktype, passive);
    host = bind_host(host, passive);
    if (!host && !passive)
        return -MD_CONN_EDNS;
    hints.ai_flags |= AI_NUMERICHOST;
    int rc = getaddrinfo(host, service, &hints, res);
    if (rc == EAI_NONAME)
        return -EAGAIN; /* a name: it needs a lookup */
    return from_gai(rc, errno);
}

int md_conn_resolve_now(const char *host, int port, int socktype, bool passive,
                        struct addrinfo **res)
{
    int rc = md_conn_resolve_literal(host, port, socktype, passive, res);
    if (rc != -EAGAIN)
        return rc;
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints;
    make_hints(&hints, socktype, passive);
    rc = resolver(host, service, &hints, res);
    return from_gai(rc, errno);
}

static void deliver(md_resolve *r)
{
    md_resolve_fn fn = r->fn;
    md_loop *loop = r->loop;
    void *ud = r->ud;
    struct addrinfo *res = r->res;
    int err = r->err;
    free(r);
    fn(loop, res, err, ud);
}

static void on_literal(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_resolve *r = ud;
    r->timer = NULL;
    deliver(r);
}

static void on_resolved(md_loop *loop, void *ud)
{
    md_resolve *r = ud;
    md_loop_release(loop);
    if (r->cancelled) { /* cancelled after the thread had finished */
        if (r->res)
            freeaddrinfo(r->res);
        free(r);
        return;
    }
    deliver(r);
}

static void *resolve_main(void *arg)
{
    md_resolve *r = arg;
    struct addrinfo *res = NULL;
    if (r->delay_ms > 0) {
        struct timespec ts = {r->delay_ms / 1000, (r->delay_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
            ;
    }
    int rc = r->resolve(r->host, r->service, &r->hints, &res);
    int err = from_gai(rc, errno);
    /* Posted under the lock: once a cancel has the lock, this thread has
     * either posted already or never touches the loop (which may be freed
     * right after the cancel). */
    pthread_mutex_lock(&res_lock);
    bool cancelled = r->cancelled;
    if (!cancelled) {
        r->finished = true;
        r->res = res;
        r->err = err;
        md_loop_post(r->loop, &r->done);
    }
    pthread_mutex_unlock(&res_lock);
    if (cancelled) { /* the owner and maybe the loop are gone: touch neither */
        if (res)
            freeaddrinfo(res);
        free(r);
    }
    return NULL;
}

static int start_thread(md_resolve *r)
{
    /* Signals belong to the loop thread. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int rc = pthread_create(&th, &attr, resolve_main, r);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}

md_resolve *md_resolve_start(md_loop *loop, const char *host, int port, int socktype,
                             bool passive, md_resolve_fn fn, void *ud)
{
    if (!loop || !fn || port < 0 || port > 65535 || (!passive && (!host || !host[0])) ||
        (host && strlen(host) >= HOST_MAX)) {
        errno = EINVAL;
        return NULL;
    }
    md_resolve *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    *r = (md_resolve){.loop = loop, .fn = fn, .ud = ud, .resolve = resolver};
    int rc = md_conn_resolve_literal(host, port, socktype, passive, &r->res);
    if (rc != -EAGAIN) {
        r->err = rc;
        r->timer = md_loop_timer(loop, md_loop_now(loop), on_literal, r);
        if (!r->timer) {
            if (r->res)
                freeaddrinfo(r->res);
            free(r);
            errno = ENOMEM;
            return NULL;
        }
        return r;
    }
    r->threaded = true;
    const char *delay = getenv("MOONDOG_TEST_DNS_DELAY_MS");
    r->delay_ms = delay ? atoi(delay) : 0;
    make_hints(&r->hints, socktype, passive);
    snprintf(r->host, sizeof r->host, "%s", host);
    snprintf(r->service, sizeof r->service, "%d", port);
    r->done = (md_completion){.fn = on_resolved, .ud = r};
    md_loop_hold(loop); /* until on_resolved, or the cancel */
    rc = start_thread(r);
    if (rc < 0) {
        md_loop_release(loop);
        free(r);
        errno = -rc;
        return NULL;
    }
    return r;
}

void md_resolve_cancel(md_resolve *r)
{
    if (!r->threaded) {
        md_loop_timer_cancel(r->loop, r->timer);
        if (r->res)
            freeaddrinfo(r->res);
        free(r);
        return;
    }
    pthread_mutex_lock(&res_lock);
    r->cancelled = true;
    bool finished = r->finished;
    pthread_mutex_unlock(&res_lock);
    /* finished: the completion is posted and frees r when it runs;
     * else the thread frees r when its lookup returns. */
    if (!finished)
        md_loop_release(r->loop);
}

/* }===== */

/* {===== connect ===== */

/* Owned by the conn layer from md_conn_start to its callback. */
struct md_conn {
    md_loop *loop;
    md_conn_fn fn;
    void *ud;
    int socktype, timeout_ms;
    md_resolve *res;               /* lookup in flight */
    struct addrinfo *addrs, *next; /* the addresses; the next to try */
    int fd;                        /* the attempt in progress, or -1 */
    md_watch *watch;               /* on fd, for writability */
    md_timer *timer;               /* the attempt's timeout */
    int err;                       /* the last address's error */
};

/* Close the attempt in progress, keep the addresses. */
static void drop_attempt(md_conn *c)
{
    if (c->timer) {
        md_loop_timer_cancel(c->loop, c->timer);
        c->timer = NULL;
    }
    md_loop_unwatch_close(c->loop, &c->watch, &c->fd);
}

static void conn_free(md_conn *c)
{
    if (c->res)
        md_resolve_cancel(c->res);
    if (c->addrs)
        freeaddrinfo(c->addrs);
    free(c);
}

/* Hand fd (or the error) to the owner; c is gone after this. */
static void conn_finish(md_conn *c, int fd, int err)
{
    md_conn_fn fn = c->fn;
    md_loop *loop = c->loop;
    void *ud = c->ud;
    conn_free(c);
    fn(loop, fd, err, ud);
}

static void on_writable(md_loop *loop, md_watch *w, int fd, int events, void *ud);
static void on_timeout(md_loop *loop, md_timer *t, void *ud);

/* Try the remaining addresses until one connects or is in progress. */
static void try_next(md_conn *c)
{
    while (c->next) {
        struct addrinfo *ai = c->next;
        c->next = ai->ai_next;
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                        ai->ai_protocol);
        if (fd < 0) {
            c->err = -errno;
            continue;
        }
        if (c->socktype == SOCK_STREAM) { /* small requests: never wait for more */
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
        int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        int err = rc < 0 ? errno : 0;
        if (rc == 0) { /* UDP, or a local stream that connected at once */
            conn_finish(c, fd, 0);
            return;
        }
        if (err != EINPROGRESS) {
            c->err = -err;
            close(fd);
            continue;
        }
        c->fd = fd;
        c->watch = md_loop_watch(c->loop, fd, MD_LOOP_WRITE, on_writable, c);
        int ms = c->timeout_ms ? c->timeout_ms : CONNECT_TIMEOUT_MS;
        c->timer = c->watch
                       ? md_loop_timer(c->loop, md_loop_now(c->loop) + ms, on_timeout, c)
                       : NULL;
        if (!c->timer) {
            c->err = -ENOMEM;
            drop_attempt(c);
            continue;
        }
        md_loop_watch_keepalive(c->loop, c->watch, false);
        md_loop_timer_keepalive(c->loop, c->timer, false);
        return;
    }
    conn_finish(c, -1, c->err);
}

static void on_writable(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)events;
    md_conn *c = ud;
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0)
        soerr = errno;
    if (soerr == 0) {
        /* Writable, or a hang-up without an error: either way the first
         * send tells, and waiting for more would spin on a hang-up. */
        c->fd = -1; /* the owner's now */
        drop_attempt(c);
        conn_finish(c, fd, 0);
        return;
    }
    c->err = -soerr;
    drop_attempt(c);
    try_next(c);
}

static void on_timeout(md_loop *loop, md_timer *t, void *ud)
{
    (void)loop, (void)t;
    md_conn *c = ud;
    c->timer = NULL;
    c->err = -ETIMEDOUT;
    drop_attempt(c);
    try_next(c);
}

static void on_addrs(md_loop *loop, struct addrinfo *res, int err, void *ud)
{
    (void)loop;
    md_conn *c = ud;
    c->res = NULL;
    if (err < 0) {
        conn_finish(c, -1, err);
        return;
    }
    c->addrs = c->next = res;
    c->err = -EHOSTUNREACH; /* an empty list */
    try_next(c);
}

md_conn *md_conn_start(md_loop *loop, const md_conn_config *cfg, md_conn_fn fn, void *ud)
{
    if (!loop || !cfg || !fn || !cfg->host || !cfg->host[0] || cfg->port <= 0 ||
        cfg->port > 65535 || cfg->timeout_ms < 0 ||
        (cfg->socktype != SOCK_STREAM && cfg->socktype != SOCK_DGRAM)) {
        errno = EINVAL;
        return NULL;
    }
    md_conn *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    *c = (md_conn){.loop = loop,
                   .fn = fn,
                   .ud = ud,
                   .socktype = cfg->socktype,
                   .timeout_ms = cfg->timeout_ms,
                   .fd = -1};
    c->res =
        md_resolve_start(loop, cfg->host, cfg->port, cfg->socktype, false, on_addrs, c);
    if (!c->res) {
        int err = errno;
        free(c);
        errno = err;
        return NULL;
    }
    return c;
}

void md_conn_cancel(md_conn *c)
{
    drop_attempt(c);
    conn_free(c);
}

/* }===== */
