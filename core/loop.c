/*
 * loop.c - the event loop (see loop.h for the contract).
 *
 * Design, after Redis's ae.c and libuv:
 *  - fd readiness through one epoll instance; a watch is registered once and
 *    modified with EPOLL_CTL_MOD when its interest changes.
 *  - timers in a binary min-heap ordered by (due, creation sequence), so
 *    equal due times fire in creation order. Each timer knows its heap slot,
 *    which makes cancel O(log n).
 *  - deferred calls in a FIFO; calls deferred while the FIFO runs wait for
 *    the next iteration so that a self-deferring callback cannot starve I/O.
 *  - completions from other threads in a mutex-protected FIFO. The poster
 *    writes the eventfd only when the FIFO was empty, the loop thread swaps
 *    the whole FIFO out under the lock and runs it without the lock.
 *  - signals through a self-pipe written by a plain sigaction handler (not
 *    signalfd: signalfd needs the signal blocked, and a blocked mask is
 *    inherited by child processes started with io.popen or os.execute).
 *
 * Ownership: the loop owns every md_watch and md_timer it returns. A watch
 * unwatched during dispatch is parked on a zombie list and freed at the end
 * of the iteration, because the epoll batch may still name it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "loop.h"
#include "log.h" /* the level only: the loop logs through md_loop_set_log */

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_bytes_sent (not glibc's) */
#include <netinet/in.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define MAX_SIGNAL 65

/* What simulated time knows of a watched fd (see "data in flight"). */
enum sock_kind {
    KIND_UNKNOWN, /* not looked at yet */
    KIND_OTHER,   /* no TCP socket: nothing can be in flight (or nothing seen) */
    KIND_TCP,     /* a TCP connection; ends known once named */
    KIND_LISTEN,  /* a listening TCP socket; local end known */
};

/* One end of a TCP connection, IPv4 as v4-mapped IPv6. */
typedef struct endpoint {
    unsigned char addr[16];
    uint16_t port;
} endpoint;

struct md_watch {
    int fd;
    int events;
    bool keepalive;
    bool dead;
    bool in_epoll; /* a paused watch leaves the set: EPOLLHUP cannot be masked */
    bool named;    /* KIND_TCP: local and peer are known */
    bool counted;  /* KIND_TCP: sent, received, unacked are this check's */
    unsigned char kind;
    endpoint local, peer;
    uint64_t sent, received; /* data bytes (and FIN) sent once, received */
    uint32_t unacked;        /* segments sent and not yet acknowledged */
    md_watch_fn fn;
    void *ud;
    md_watch *prev, *next; /* live watches, so that md_loop_free finds them */
    md_watch *next_zombie;
};

struct md_timer {
    int64_t due;
    uint64_t seq;
    size_t slot; /* index in the heap */
    bool keepalive;
    md_timer_fn fn;
    void *ud;
};

typedef struct deferred {
    struct deferred *next;
    md_call_fn fn;
    void *ud;
} deferred;

typedef struct signal_route {
    md_call_fn fn;
    void *ud;
    void (*async)(int);
} signal_route;

struct md_loop {
    int epfd;
    int wakefd; /* eventfd: posted completions and md_loop_wake */
    int sigpipe[2];
    md_watch *wake_watch, *sig_watch;

    md_clock_fn clock;
    void *clock_ud;
    bool sim;           /* simulated time: the clock is sim_now */
    int64_t sim_now;    /* virtual md_loop_now() */
    int64_t sim_wall;   /* wall-clock ms at sim_now == sim_origin */
    int64_t sim_origin; /* sim_now when the simulation started */
    int sim_quiet_ms;   /* real ms to wait for outside peers before a jump */
    long flight_waits;  /* jumps held back for data in flight (md_loop_counts) */
    long flight_giveups;
    bool flight_logged; /* the give-up is logged once */
    void (*log)(int level, const char *text);

    int watches_alive; /* watches with keepalive and events != 0 */
    md_watch *watches; /* live list */
    md_watch *zombies;
    int dispatch_depth; /* zombies are freed only when the outermost batch ends */

    md_timer **heap;
    size_t ntimers, heap_cap;
    size_t timers_alive;
    uint64_t timer_seq;

    deferred *defer_head, *defer_tail;
    long holds;
    long local_holds; /* of holds, those for work the loop itself carries */

    pthread_mutex_t post_lock;
    md_completion *post_head, *post_tail; /* guarded by post_lock */

    signal_route signals[MAX_SIGNAL];
    bool stopped;
};

/* {===== time ===== */

static int64_t monotonic_ms(void *ud)
{
    (void)ud;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t md_loop_now(md_loop *loop)
{
    return loop->sim ? loop->sim_now : loop->clock(loop->clock_ud);
}

/* The virtual clock starts at the same md_loop_now() in every run, so that
 * a simulation repeats exactly; the timers already set move with it. */
#define SIM_ORIGIN_MS 1000000

void md_loop_simulate(md_loop *loop, int64_t wall_ms, int quiet_ms)
{
    if (!loop->sim) {
        int64_t shift = SIM_ORIGIN_MS - loop->clock(loop->clock_ud);
        for (size_t i = 0; i < loop->ntimers; i++)
            loop->heap[i]->due += shift; /* one shift for all keeps the heap's order */
        loop->sim_now = SIM_ORIGIN_MS;
        loop->sim = true;
    }
    loop->sim_origin = loop->sim_now;
    loop->sim_wall = wall_ms;
    loop->sim_quiet_ms = quiet_ms < 0 ? 0 : quiet_ms;
}

bool md_loop_simulated(md_loop *loop)
{
    return loop->sim;
}

int64_t md_loop_wall_ms(md_loop *loop)
{
    if (loop->sim)
        return loop->sim_wall + (loop->sim_now - loop->sim_origin);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void md_loop_set_log(md_loop *loop, void (*log)(int level, const char *text))
{
    loop->log = log;
}

void md_loop_set_clock(md_loop *loop, md_clock_fn fn, void *ud)
{
    loop->clock = fn ? fn : monotonic_ms;
    loop->clock_ud = ud;
}

/* }===== */

/* {===== watches ===== */

static uint32_t epoll_bits(int events)
{
    uint32_t bits = 0;
    if (events & MD_LOOP_READ)
        bits |= EPOLLIN | EPOLLRDHUP;
    if (events & MD_LOOP_WRITE)
        bits |= EPOLLOUT;
    return bits;
}

static bool watch_counts(const md_watch *w)
{
    return !w->dead && w->keepalive && w->events != 0;
}

/* Bring the epoll registration in line with w->events. */
static int watch_sync(md_loop *loop, md_watch *w)
{
    struct epoll_event ev = {.events = epoll_bits(w->events), .data.ptr = w};
    if (w->events == 0) {
        if (w->in_epoll && epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL) < 0)
            return -errno;
        w->in_epoll = false;
        return 0;
    }
    if (epoll_ctl(loop->epfd, w->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, w->fd, &ev) <
        0)
        return -errno;
    w->in_epoll = true;
    return 0;
}

md_watch *md_loop_watch(md_loop *loop, int fd, int events, md_watch_fn fn, void *ud)
{
    for (md_watch *o = loop->watches; o; o = o->next)
        if (o->fd == fd) {
            errno = EEXIST;
            return NULL;
        }
    md_watch *w = calloc(1, sizeof *w);
    if (!w) {
        errno = ENOMEM;
        return NULL;
    }
    *w = (md_watch){.fd = fd, .events = events, .keepalive = true, .fn = fn, .ud = ud};
    int rc = watch_sync(loop, w);
    if (rc < 0) {
        free(w);
        errno = -rc;
        return NULL;
    }
    w->next = loop->watches;
    if (w->next)
        w->next->prev = w;
    loop->watches = w;
    if (watch_counts(w))
        loop->watches_alive++;
    return w;
}

int md_loop_watch_set(md_loop *loop, md_watch *w, int events)
{
    assert(!w->dead);
    if (events == w->events)
        return 0;
    int old = w->events;
    loop->watches_alive -= watch_counts(w);
    w->events = events;
    int rc = watch_sync(loop, w);
    if (rc < 0)
        w->events = old;
    loop->watches_alive += watch_counts(w);
    return rc;
}

void md_loop_watch_keepalive(md_loop *loop, md_watch *w, bool keepalive)
{
    loop->watches_alive -= watch_counts(w);
    w->keepalive = keepalive;
    loop->watches_alive += watch_counts(w);
}

void md_loop_unwatch(md_loop *loop, md_watch *w)
{
    if (!w || w->dead)
        return;
    loop->watches_alive -= watch_counts(w);
    /* The fd may already be closed by its owner; then the kernel dropped it
     * from the epoll set itself and this fails harmlessly with EBADF. */
    if (w->in_epoll)
        epoll_ctl(loop->epfd, EPOLL_CTL_DEL, w->fd, NULL);
    w->dead = true;
    if (w->prev)
        w->prev->next = w->next;
    else
        loop->watches = w->next;
    if (w->next)
        w->next->prev = w->prev;
    w->next_zombie = loop->zombies;
    loop->zombies = w;
}

void md_loop_unwatch_close(md_loop *loop, md_watch **w, int *fd)
{
    md_loop_unwatch(loop, *w);
    *w = NULL;
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void free_zombies(md_loop *loop)
{
    while (loop->zombies) {
        md_watch *w = loop->zombies;
        loop->zombies = w->next_zombie;
        free(w);
    }
}

/* }===== */

/* {===== timers: binary min-heap ===== */

static bool timer_before(const md_timer *a, const md_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void heap_place(md_loop *loop, size_t i, md_timer *t)
{
    loop->heap[i] = t;
    t->slot = i;
}

static void heap_up(md_loop *loop, size_t i)
{
    md_timer *t = loop->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(t, loop->heap[parent]))
            break;
        heap_place(loop, i, loop->heap[parent]);
        i = parent;
    }
    heap_place(loop, i, t);
}

static void heap_down(md_loop *loop, size_t i)
{
    md_timer *t = loop->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= loop->ntimers)
            break;
        if (child + 1 < loop->ntimers &&
            timer_before(loop->heap[child + 1], loop->heap[child]))
            child++;
        if (!timer_before(loop->heap[child], t))
            break;
        heap_place(loop, i, loop->heap[child]);
        i = child;
    }
    heap_place(loop, i, t);
}

static void heap_remove(md_loop *loop, md_timer *t)
{
    size_t i = t->slot;
    assert(i < loop->ntimers && loop->heap[i] == t);
    md_timer *last = loop->heap[--loop->ntimers];
    if (last != t) {
        heap_place(loop, i, last);
        heap_up(loop, i);
        heap_down(loop, last->slot);
    }
    if (t->keepalive)
        loop->timers_alive--;
}

md_timer *md_loop_timer(md_loop *loop, int64_t due_ms, md_timer_fn fn, void *ud)
{
    if (loop->ntimers == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        md_timer **heap = realloc(loop->heap, cap * sizeof *heap);
        if (!heap)
            return NULL;
        loop->heap = heap;
        loop->heap_cap = cap;
    }
    md_timer *t = malloc(sizeof *t);
    if (!t)
        return NULL;
    *t = (md_timer){
        .due = due_ms, .seq = loop->timer_seq++, .keepalive = true, .fn = fn, .ud = ud};
    loop->heap[loop->ntimers++] = t;
    heap_up(loop, loop->ntimers - 1);
    loop->timers_alive++;
    return t;
}

void md_loop_timer_cancel(md_loop *loop, md_timer *t)
{
    if (!t)
        return;
    heap_remove(loop, t);
    free(t);
}

void md_loop_timer_keepalive(md_loop *loop, md_timer *t, bool keepalive)
{
    if (t->keepalive != keepalive)
        loop->timers_alive += keepalive ? 1 : -1;
    t->keepalive = keepalive;
}

/* Fire every timer due by now. A timer added by a callback with a due time
 * already past fires in the same pass only if it sorts after the current
 * one, which keeps creation order; md.every relies on that. */
static int run_timers(md_loop *loop)
{
    int ran = 0;
    int64_t now = md_loop_now(loop);
    while (loop->ntimers > 0 && loop->heap[0]->due <= now && !loop->stopped) {
        md_timer *t = loop->heap[0];
        heap_remove(loop, t);
        t->fn(loop, t, t->ud);
        free(t);
        ran++;
    }
    return ran;
}

/* }===== */

/* {===== deferred calls and completions ===== */

int md_loop_defer(md_loop *loop, md_call_fn fn, void *ud)
{
    deferred *d = malloc(sizeof *d);
    if (!d)
        return -ENOMEM;
    *d = (deferred){.fn = fn, .ud = ud};
    if (loop->defer_tail)
        loop->defer_tail->next = d;
    else
        loop->defer_head = d;
    loop->defer_tail = d;
    return 0;
}

/* Run the calls queued before this pass, one at a time from the shared
 * FIFO, so that a nested md_loop_run_until inside one of them still sees
 * (and runs) the others. */
static int run_deferred(md_loop *loop)
{
    int n = 0;
    for (deferred *d = loop->defer_head; d; d = d->next)
        n++;
    int ran = 0;
    for (; ran < n && loop->defer_head; ran++) {
        deferred *d = loop->defer_head;
        loop->defer_head = d->next;
        if (!loop->defer_head)
            loop->defer_tail = NULL;
        md_call_fn fn = d->fn;
        void *ud = d->ud;
        free(d);
        fn(loop, ud);
    }
    return ran;
}

void md_loop_wake(md_loop *loop)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake. */
    ssize_t n = write(loop->wakefd, &one, sizeof one);
    (void)n;
}

void md_loop_post(md_loop *loop, md_completion *c)
{
    c->next = NULL;
    pthread_mutex_lock(&loop->post_lock);
    bool was_empty = loop->post_head == NULL;
    if (loop->post_tail)
        loop->post_tail->next = c;
    else
        loop->post_head = c;
    loop->post_tail = c;
    pthread_mutex_unlock(&loop->post_lock);
    if (was_empty)
        md_loop_wake(loop);
}

static bool posts_pending(md_loop *loop)
{
    pthread_mutex_lock(&loop->post_lock);
    bool pending = loop->post_head != NULL;
    pthread_mutex_unlock(&loop->post_lock);
    return pending;
}

/* Pop one completion at a time, like run_deferred, so that a nested
 * md_loop_run_until inside one of them still runs the ones behind it. At
 * most the number queued at the start is run, so posters cannot starve the
 * rest of the loop. */
static md_completion *pop_posted(md_loop *loop)
{
    pthread_mutex_lock(&loop->post_lock);
    md_completion *c = loop->post_head;
    if (c) {
        loop->post_head = c->next;
        if (!loop->post_head)
            loop->post_tail = NULL;
    }
    pthread_mutex_unlock(&loop->post_lock);
    return c;
}

static int run_posted(md_loop *loop)
{
    pthread_mutex_lock(&loop->post_lock);
    int n = 0;
    for (md_completion *c = loop->post_head; c; c = c->next)
        n++;
    pthread_mutex_unlock(&loop->post_lock);
    int ran = 0;
    for (md_completion *c; ran < n && (c = pop_posted(loop)); ran++)
        c->fn(loop, c->ud); /* fn may free or repost c */
    return ran;
}

int md_loop_run_posted(md_loop *loop)
{
    return run_posted(loop);
}

static void on_wakefd(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)loop, (void)w, (void)events, (void)ud;
    uint64_t count;
    ssize_t n = read(fd, &count, sizeof count);
    (void)n;
}

void md_loop_hold(md_loop *loop)
{
    loop->holds++;
}

void md_loop_release(md_loop *loop)
{
    assert(loop->holds > 0);
    loop->holds--;
}

void md_loop_hold_local(md_loop *loop)
{
    loop->holds++;
    loop->local_holds++;
}

void md_loop_release_local(md_loop *loop)
{
    assert(loop->local_holds > 0 && loop->holds > 0);
    loop->local_holds--;
    loop->holds--;
}

/* }===== */

/* {===== signals ===== */

/* Signals are process-wide, so the routing table lives with the one loop
 * that asked for them. */
static md_loop *signal_loop;
static volatile sig_atomic_t signal_seen[MAX_SIGNAL];

static void on_signal(int signo)
{
    int saved = errno;
    md_loop *loop = signal_loop;
    if (loop && signo > 0 && signo < MAX_SIGNAL) {
        signal_seen[signo] = 1;
        if (loop->signals[signo].async)
            loop->signals[signo].async(signo);
        unsigned char byte = (unsigned char)signo;
        ssize_t n = write(loop->sigpipe[1], &byte, 1);
        (void)n;
    }
    errno = saved;
}

static void on_sigpipe(md_loop *loop, md_watch *w, int fd, int events, void *ud)
{
    (void)w, (void)events, (void)ud;
    unsigned char buf[64];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    for (int s = 1; s < MAX_SIGNAL; s++) {
        if (!signal_seen[s])
            continue;
        signal_seen[s] = 0;
        if (loop->signals[s].fn)
            loop->signals[s].fn(loop, loop->signals[s].ud);
    }
}

int md_loop_signal(md_loop *loop, int signo, md_call_fn fn, void *ud, void (*async)(int))
{
    if (signo <= 0 || signo >= MAX_SIGNAL)
        return -EINVAL;
    if (signal_loop && signal_loop != loop)
        return -EBUSY;
    if (!loop->sig_watch) {
        if (pipe2(loop->sigpipe, O_NONBLOCK | O_CLOEXEC) < 0)
            return -errno;
        loop->sig_watch =
            md_loop_watch(loop, loop->sigpipe[0], MD_LOOP_READ, on_sigpipe, NULL);
        if (!loop->sig_watch)
            return -errno;
        md_loop_watch_keepalive(loop, loop->sig_watch, false);
    }
    signal_loop = loop;
    loop->signals[signo] = (signal_route){.fn = fn, .ud = ud, .async = async};
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    if (sigaction(signo, &sa, NULL) < 0)
        return -errno;
    return 0;
}

static void restore_signals(md_loop *loop)
{
    if (signal_loop != loop)
        return;
    for (int s = 1; s < MAX_SIGNAL; s++)
        if (loop->signals[s].fn)
            signal(s, SIG_DFL);
    signal_loop = NULL;
}

/* }===== */

/* {===== life cycle and running ===== */

md_loop *md_loop_new(void)
{
    md_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return NULL;
    loop->clock = monotonic_ms;
    loop->sigpipe[0] = loop->sigpipe[1] = -1;
    pthread_mutex_init(&loop->post_lock, NULL);
    loop->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (loop->epfd < 0)
        goto fail;
    loop->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->wakefd < 0)
        goto fail_epoll;
    loop->wake_watch = md_loop_watch(loop, loop->wakefd, MD_LOOP_READ, on_wakefd, NULL);
    if (!loop->wake_watch)
        goto fail_wakefd;
    md_loop_watch_keepalive(loop, loop->wake_watch, false);
    return loop;

fail_wakefd:
    close(loop->wakefd);
fail_epoll:
    close(loop->epfd);
fail : {
    int err = errno;
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
    errno = err;
    return NULL;
}
}

void md_loop_free(md_loop *loop)
{
    if (!loop)
        return;
    restore_signals(loop);
    while (loop->watches)
        md_loop_unwatch(loop, loop->watches);
    free_zombies(loop);
    for (size_t i = 0; i < loop->ntimers; i++)
        free(loop->heap[i]);
    free(loop->heap);
    while (loop->defer_head) {
        deferred *d = loop->defer_head;
        loop->defer_head = d->next;
        free(d);
    }
    if (loop->sigpipe[0] >= 0) {
        close(loop->sigpipe[0]);
        close(loop->sigpipe[1]);
    }
    close(loop->wakefd);
    close(loop->epfd);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
}

void md_loop_get_counts(md_loop *loop, md_loop_counts *out)
{
    *out = (md_loop_counts){.timers = (int)loop->ntimers,
                            .holds = loop->holds,
                            .flight_waits = loop->flight_waits,
                            .flight_giveups = loop->flight_giveups};
    for (md_watch *w = loop->watches; w; w = w->next)
        if (w != loop->wake_watch && w != loop->sig_watch)
            out->watches++;
    for (deferred *d = loop->defer_head; d; d = d->next)
        out->deferred++;
}

bool md_loop_alive(md_loop *loop)
{
    return loop->watches_alive > 0 || loop->timers_alive > 0 || loop->holds > 0 ||
           loop->defer_head != NULL || posts_pending(loop);
}

/* How long epoll may sleep: until the next timer, never past a pending
 * deferred call, and not at all if nothing could ever wake it. */
static int wait_timeout(md_loop *loop, int timeout_ms)
{
    if (loop->defer_head || loop->stopped)
        return 0;
    if (loop->ntimers > 0) {
        int64_t left = loop->heap[0]->due - md_loop_now(loop);
        if (left < 0)
            left = 0;
        if (left > INT32_MAX)
            left = INT32_MAX;
        if (timeout_ms < 0 || left < timeout_ms)
            timeout_ms = (int)left;
    }
    return timeout_ms;
}

static int dispatch_events(md_loop *loop, int timeout_ms)
{
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(loop->epfd, events, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int ran = 0;
    for (int i = 0; i < n; i++) {
        md_watch *w = events[i].data.ptr;
        if (w->dead || w->events == 0) /* unwatched or paused earlier in this batch */
            continue;
        uint32_t bits = events[i].events;
        int ev = 0;
        if (bits & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
            ev |= MD_LOOP_READ;
        if (bits & EPOLLOUT)
            ev |= MD_LOOP_WRITE;
        if (!ev)
            continue;
        w->fn(loop, w, w->fd, ev, w->ud);
        ran += w != loop->wake_watch; /* the loop's own wake-up is no callback */
    }
    return ran;
}

/* {===== simulated time: data in flight ===== */

/*
 * Before the clock jumps, "no fd is ready" must mean that nothing is on its
 * way to one. On loopback it can be: TCP hands a segment to the loopback
 * device, which queues it for the receive softirq; on a loaded machine that
 * runs later, in ksoftirqd, and until then the receiving socket is not
 * readable. A jump in that gap moves the clock past a reply that was already
 * sent (test_shutdown's limiter saw its 10 s bound expire that way).
 *
 * The kernel says what is still in flight, for TCP (man 7 tcp; SIOCOUTQ
 * and TCP_INFO): bytes sent and not acknowledged by the peer's stack. That
 * alone would hold the clock on every delayed ACK (the receiver has the data
 * but acknowledges up to 40 ms later), so when both ends are sockets this
 * loop watches, their TCP_INFO byte counters decide: data is in flight while
 * the sender has unacknowledged segments and has sent more
 * (tcpi_bytes_sent - tcpi_bytes_retrans, +1 once its FIN is out) than the
 * receiver has taken in (tcpi_bytes_received, which counts a FIN as 1). Also
 * in flight: data to a connection this loop's listener has not accepted yet,
 * and a connect() from a loopback address still in SYN-SENT (the handshake
 * is the kernel's alone). While any of that holds, the loop waits for I/O in
 * real time, 1 ms at a time, up to FLIGHT_MAX_MS (then it logs once at debug
 * and jumps). A receiver that is paused (no MD_LOOP_READ) is not waited for:
 * its data could start nothing.
 *
 * Not covered: AF_UNIX sockets, pipes and eventfds need nothing (a write
 * lands in the reader's queue before it returns); UDP datagrams and pty
 * writes are queued (softirq, tty flip buffer) without a trace the sender can
 * ask about; and a peer in another process (a broker, a socat) answers in its
 * own time: that stays under the quiet time.
 *
 * Data that arrives between the idle poll and the check counts as received,
 * so a check that finds nothing in flight is followed by one more poll.
 *
 * Cost: one getsockopt(TCP_INFO) per watched TCP connection and one
 * epoll_wait per jump; a socket's kind and ends are read once and kept in
 * its watch. Measured on the sunny_day scenario (4 connections, ~13 jumps a
 * simulated second): 270k instead of 153k syscalls per simulated half hour,
 * CPU time within the noise of this shared machine (task-clock per
 * simulated hour, median of 3: 2.95 s against 2.93 s before).
 */
#define FLIGHT_MAX_MS 1000

/* TCP states as struct tcp_info reports them (include/net/tcp_states.h;
 * glibc's enum of the same names clashes with <linux/tcp.h>). */
enum {
    STATE_SYN_SENT = 2,
    STATE_FIN_WAIT1 = 4,
    STATE_FIN_WAIT2 = 5,
    STATE_TIME_WAIT = 6,
    STATE_LAST_ACK = 9,
    STATE_CLOSING = 11,
};

static bool fin_sent(int state)
{
    return state == STATE_FIN_WAIT1 || state == STATE_FIN_WAIT2 ||
           state == STATE_TIME_WAIT || state == STATE_LAST_ACK || state == STATE_CLOSING;
}

static bool to_endpoint(const struct sockaddr_storage *ss, endpoint *e)
{
    memset(e, 0, sizeof *e);
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        e->addr[10] = e->addr[11] = 0xff;
        memcpy(e->addr + 12, &in->sin_addr, 4);
        e->port = in->sin_port;
        return true;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        memcpy(e->addr, &in6->sin6_addr, 16);
        e->port = in6->sin6_port;
        return true;
    }
    return false;
}

static bool sock_end(int fd, bool peer, endpoint *e)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
                  : getsockname(fd, (struct sockaddr *)&ss, &len);
    return rc == 0 && to_endpoint(&ss, e);
}

static bool endpoint_eq(const endpoint *a, const endpoint *b)
{
    return a->port == b->port && memcmp(a->addr, b->addr, 16) == 0;
}

static bool endpoint_any(const endpoint *e)
{
    static const unsigned char any6[16], any4[16] = {[10] = 0xff, [11] = 0xff};
    return memcmp(e->addr, any6, 16) == 0 || memcmp(e->addr, any4, 16) == 0;
}

static bool endpoint_loopback(const endpoint *e)
{
    static const unsigned char lo6[16] = {[15] = 1};
    static const unsigned char v4[12] = {[10] = 0xff, [11] = 0xff};
    return memcmp(e->addr, lo6, 16) == 0 ||
           (memcmp(e->addr, v4, 12) == 0 && e->addr[12] == 127);
}

static int sockopt_int(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    return getsockopt(fd, level, name, &v, &len) == 0 ? v : -1;
}

static bool tcp_info_of(int fd, struct tcp_info *ti)
{
    socklen_t len = sizeof *ti;
    memset(ti, 0, sizeof *ti);
    return getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) == 0;
}

/* Find out once what kind of socket w is; a connection is named as soon as
 * it is connected. */
static void classify(md_watch *w)
{
    if (w->kind == KIND_UNKNOWN) {
        int domain = sockopt_int(w->fd, SOL_SOCKET, SO_DOMAIN);
        bool tcp = (domain == AF_INET || domain == AF_INET6) &&
                   sockopt_int(w->fd, SOL_SOCKET, SO_TYPE) == SOCK_STREAM &&
                   sockopt_int(w->fd, SOL_SOCKET, SO_PROTOCOL) == IPPROTO_TCP;
        w->kind = KIND_OTHER;
        if (tcp && sockopt_int(w->fd, SOL_SOCKET, SO_ACCEPTCONN) == 1) {
            if (sock_end(w->fd, false, &w->local))
                w->kind = KIND_LISTEN;
        } else if (tcp) {
            w->kind = KIND_TCP;
        }
    }
    if (w->kind == KIND_TCP && !w->named)
        w->named = sock_end(w->fd, true, &w->peer) && sock_end(w->fd, false, &w->local);
}

/* Whether the connection a (counted, with unacknowledged segments) still
 * has data on its way to a socket this loop reads. */
static bool conn_in_flight(md_loop *loop, md_watch *a)
{
    for (md_watch *b = loop->watches; b; b = b->next) {
        if (b == a || b->kind != KIND_TCP || !b->named ||
            !endpoint_eq(&b->local, &a->peer) || !endpoint_eq(&b->peer, &a->local))
            continue;
        if (!(b->events & MD_LOOP_READ) || !b->counted)
            return false; /* not read now: its data can start nothing */
        return a->sent > b->received;
    }
    /* no watched peer: one this loop's listener has yet to accept? */
    for (md_watch *l = loop->watches; l; l = l->next)
        if (l->kind == KIND_LISTEN && (l->events & MD_LOOP_READ) &&
            l->local.port == a->peer.port &&
            (endpoint_eq(&l->local, &a->peer) || endpoint_any(&l->local)))
            return true;
    return false;
}

/* Read what the kernel says of w now (a TCP connection). Returns true when
 * it is a connect() from loopback still in its handshake. */
static bool count(md_watch *w)
{
    struct tcp_info ti;
    w->counted = false;
    if (!tcp_info_of(w->fd, &ti))
        return false;
    if (!w->named) {
        endpoint local;
        return w->events != 0 && ti.tcpi_state == STATE_SYN_SENT &&
               sock_end(w->fd, false, &local) && endpoint_loopback(&local);
    }
    w->sent = ti.tcpi_bytes_sent - ti.tcpi_bytes_retrans + fin_sent(ti.tcpi_state);
    w->received = ti.tcpi_bytes_received;
    w->unacked = ti.tcpi_unacked;
    w->counted = true;
    return false;
}

/* Whether anything written by this process is still on its way to a socket
 * this loop watches (see above); *tcp tells whether any TCP connection was
 * looked at. */
static bool in_flight(md_loop *loop, bool *tcp)
{
    for (md_watch *w = loop->watches; w; w = w->next) {
        classify(w);
        *tcp |= w->kind == KIND_TCP;
        if (w->kind == KIND_TCP && count(w))
            return true;
    }
    for (md_watch *w = loop->watches; w; w = w->next)
        if (w->kind == KIND_TCP && w->counted && w->unacked > 0 &&
            conn_in_flight(loop, w))
            return true;
    return false;
}

/* Wait in real time, 1 ms at a time, while data is in flight. Returns what
 * dispatch returned (0: nothing came, the clock may jump). Data that
 * arrived between the caller's poll and the check counts as delivered, so
 * a check that finds nothing in flight is followed by one more poll. */
static int wait_in_flight(md_loop *loop)
{
    int64_t start = 0;
    bool tcp = false;
    while (in_flight(loop, &tcp)) {
        int64_t now = monotonic_ms(NULL);
        if (start == 0) {
            start = now;
            loop->flight_waits++;
        } else if (now - start >= FLIGHT_MAX_MS) {
            loop->flight_giveups++;
            if (!loop->flight_logged && loop->log) {
                loop->flight_logged = true;
                char msg[160];
                snprintf(msg, sizeof msg,
                         "simulated time: data sent over loopback did not arrive within "
                         "%d ms of real time; the clock moves on anyway",
                         FLIGHT_MAX_MS);
                loop->log(MD_LOG_DEBUG, msg);
            }
            return 0;
        }
        int n = dispatch_events(loop, 1);
        if (n != 0 || loop->defer_head || posts_pending(loop) || loop->stopped)
            return n;
    }
    return tcp ? dispatch_events(loop, 0) : 0;
}

/* }===== */

/* Simulated time: nothing ran, so look for I/O without waiting (or wait the
 * quiet time, or for another thread's work in real time, or for data still
 * in flight to this loop's sockets); when there is none either, jump to the
 * next timer. Returns what dispatch returned. */
static int sim_idle(md_loop *loop, int timeout_ms)
{
    bool elsewhere =
        loop->holds > loop->local_holds; /* another thread's work in flight */
    int n = dispatch_events(loop, elsewhere ? -1 : loop->sim_quiet_ms);
    if (n != 0 || loop->defer_head || posts_pending(loop) || loop->stopped)
        return n;
    n = wait_in_flight(loop);
    if (n != 0 || loop->defer_head || posts_pending(loop) || loop->stopped)
        return n;
    if (loop->ntimers > 0) {
        if (loop->heap[0]->due > loop->sim_now)
            loop->sim_now = loop->heap[0]->due;
        return 0;
    }
    /* no timer: only outside I/O can bring work; wait for it in real time */
    return timeout_ms == 0 ? 0 : dispatch_events(loop, timeout_ms);
}

int md_loop_run_once(md_loop *loop, int timeout_ms)
{
    int ran = run_deferred(loop);
    ran += run_posted(loop);
    ran += run_timers(loop);
    if (loop->sim) {
        loop->dispatch_depth++;
        int n = ran > 0 ? dispatch_events(loop, 0) : sim_idle(loop, timeout_ms);
        if (--loop->dispatch_depth == 0)
            free_zombies(loop);
        if (n < 0)
            return n;
        return ran + n + run_posted(loop);
    }
    loop->dispatch_depth++;
    int n = dispatch_events(loop, wait_timeout(loop, ran > 0 ? 0 : timeout_ms));
    if (--loop->dispatch_depth == 0) /* an outer batch may still name a zombie */
        free_zombies(loop);
    if (n < 0)
        return n;
    return ran + n + run_posted(loop);
}

int md_loop_run_until(md_loop *loop, bool (*done)(void *ud), void *ud)
{
    while (!done || !done(ud)) {
        if (loop->stopped)
            return 1;
        if (!md_loop_alive(loop))
            return done ? -EDEADLK : 0;
        int rc = md_loop_run_once(loop, -1);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int md_loop_run(md_loop *loop)
{
    loop->stopped = false;
    int rc = md_loop_run_until(loop, NULL, NULL);
    return rc == 1 ? 1 : 0;
}

void md_loop_stop(md_loop *loop)
{
    loop->stopped = true;
}

bool md_loop_stopped(md_loop *loop)
{
    return loop->stopped;
}

/* }===== */
