/*
 * mqtt_lua.c - moondog.mqtt.core: MQTT clients for Lua (see mqtt.c).
 *
 *   local c = core.new{host = "127.0.0.1", port = 1883, client_id = "x", ...}
 *   c:wait_connected([timeout])          -> true | nil, message, code
 *   c:publish(topic, payload, qos, retain [, wait [, timeout]])
 *                                        -> mid | nil, message, code
 *   c:subscribe(filter, qos)             -> id | nil, message, code
 *   c:receive(id)                        -> topic, payload, qos, retain | nil
 *   c:unsubscribe(id), c:next_event(), c:flush([timeout]), c:status(),
 *   c:stats(), c:close()
 *   core.matches(filter, topic), core.check_topic(topic [, is_filter])
 *
 * lua/moondog/mqtt/init.lua builds the user-facing API on top (option
 * checking, handlers running as tasks). Every waiting call follows the
 * engine's async pattern; argument errors raise, failures of the broker or
 * the network return nil, message, code.
 *
 * publish returns as soon as libmosquitto has the message (fire and
 * forget: its message id), or with wait = true when the broker has
 * acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2; across reconnects;
 * also the message id). At QoS 0 there is nothing to wait for.
 *
 * Incoming messages: libmosquitto's callback only copies each message into
 * the queue of every subscription whose filter matches (at most
 * max_pending per subscription and max_pending_bytes over all of them; more
 * are counted and logged) and wakes the
 * subscription's receive() call. Lua never runs inside a libmosquitto
 * callback.
 *
 * The subscription list and its dispatch (mqtt_subs.c), the queues and the
 * topic rules (mqtt_queue.c) are Lua-free and cmocka-tested.
 *
 * Ownership: the client userdata owns its md_mqtt, subscriptions, queued
 * messages and events. A waiting call owns an op; the client links it until
 * it completes (or the client closes, which completes it with "closed").
 * The results function frees a completed op; the cancel function (timeout,
 * cancelled task) unlinks and frees a pending one.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>
#include <lua.h>

#include "engine.h"
#include "err_lua.h"
#include "log.h"
#include "mqtt.h"
#include "mqtt_subs.h"

#define CLIENT_MT "moondog.mqtt.client"
#define MAX_EVENTS 32

typedef struct lclient lclient;
typedef md_mqtt_sub sub;

typedef md_mqtt_msg msg;

typedef enum {
    OP_CONNECT,
    OP_PUBLISH,
    OP_SUBSCRIBE,
    OP_RECEIVE,
    OP_EVENT,
    OP_FLUSH
} op_kind;

typedef md_mqtt_event_rec event;

/* A waiting call. */
typedef struct op {
    struct op *prev, *next; /* in the client's list while pending */
    lclient *c;             /* NULL once completed */
    md_wait *wait;
    op_kind kind;
    sub *s;          /* OP_SUBSCRIBE, OP_RECEIVE */
    int mid, result; /* publish: mid; subscribe: sub id, or -1 refused */
    msg *m;          /* OP_RECEIVE: the message handed over; NULL: end */
    event *e;        /* OP_EVENT: the event handed over; NULL: end */
    const char *code;
    char error[300];
} op;

struct lclient {
    md_mqtt *m; /* NULL once closed */
    md_engine *E;
    op *ops;
    md_mqtt_subs subs;     /* with the budget of messages queued for handlers */
    md_mqtt_events events; /* for next_event, once someone listens */
    uint64_t failures;
    bool listening;      /* someone called next_event: keep events */
    bool ever_connected; /* wait_connected: failures end a wait only before */
    char name[200];
};

/* {===== ops ===== */

static void op_link(lclient *c, op *o)
{
    o->c = c;
    o->prev = NULL;
    o->next = c->ops;
    if (c->ops)
        c->ops->prev = o;
    c->ops = o;
}

static void op_unlink(op *o)
{
    if (!o->c)
        return;
    if (o->prev)
        o->prev->next = o->next;
    else
        o->c->ops = o->next;
    if (o->next)
        o->next->prev = o->prev;
    o->c = NULL;
    o->prev = o->next = NULL;
}

static void op_finish(op *o, const char *code, const char *error)
{
    if (o->kind == OP_RECEIVE && o->s)
        o->s->receiver = NULL;
    if (o->kind == OP_SUBSCRIBE && o->s)
        o->s->suback = NULL;
    o->s = NULL;
    op_unlink(o);
    o->code = code;
    if (error)
        snprintf(o->error, sizeof o->error, "%s", error);
    md_task_done(o->wait);
}

static void op_cancel(void *p)
{
    op *o = p;
    if (o->kind == OP_PUBLISH && o->c && o->c->m)
        md_mqtt_forget(o->c->m, o);
    if (o->kind == OP_RECEIVE && o->s)
        o->s->receiver = NULL;
    if (o->kind == OP_SUBSCRIBE && o->s)
        o->s->suback = NULL;
    op_unlink(o);
    free(o->m);
    free(o->e);
    free(o);
}

/* Finish every pending op of a kind (all kinds: kind < 0). */
static void finish_ops(lclient *c, int kind, const char *code, const char *error)
{
    for (op *o = c->ops, *next; o; o = next) {
        next = o->next;
        if (kind < 0 || (int)o->kind == kind)
            op_finish(o, code, error);
    }
}

static op *new_op(lua_State *L, lclient *c, op_kind kind)
{
    md_task_check(L);
    op *o = calloc(1, sizeof *o);
    if (!o)
        luaL_error(L, "out of memory");
    o->kind = kind;
    o->wait = md_task_wait(L, o, op_cancel);
    op_link(c, o);
    return o;
}

static int push_failure(lua_State *L, op *o)
{
    return md_err_pusht(L, o->code, "%s", o->error);
}

/* }===== */

/* {===== handlers (called inside libmosquitto callbacks) ===== */

static void push_event(lclient *c, md_mqtt_event ev, bool flag, const char *code,
                       const char *message)
{
    for (op *o = c->ops; o; o = o->next)
        if (o->kind == OP_EVENT) {
            o->e = md_mqtt_event_new(ev, flag, code, message);
            op_finish(o, NULL, NULL);
            return;
        }
    if (!c->listening)
        return;
    event *e = md_mqtt_event_new(ev, flag, code, message);
    if (e)
        md_mqtt_events_push(&c->events, e);
}

static void resubscribe(lclient *c)
{
    for (sub *s = c->subs.head; s; s = s->next) {
        s->mid = 0;
        if (md_mqtt_subscribe(c->m, s->filter, s->qos, &s->mid) < 0)
            s->mid = 0;
    }
}

static void on_state(void *ud, md_mqtt_event ev, bool flag, const char *code,
                     const char *message)
{
    lclient *c = ud;
    if (ev == MD_MQTT_CONNECTED) {
        c->ever_connected = true;
        resubscribe(c);
        finish_ops(c, OP_CONNECT, NULL, NULL);
    } else {
        c->failures++;
        if (!c->ever_connected)
            finish_ops(c, OP_CONNECT, code, message);
        /* A SUBSCRIBE in flight is sent again after the reconnect; its
         * caller need not wait for that. */
        for (sub *s = c->subs.head; s; s = s->next)
            if (s->suback) {
                ((op *)s->suback)->result = s->id;
                op_finish(s->suback, NULL, NULL);
            }
    }
    if (ev != MD_MQTT_ATTEMPT_FAILED)
        push_event(c, ev, flag, code, message);
}

static void on_delivered(void *ud, void *tag)
{
    (void)ud;
    op_finish(tag, NULL, NULL);
}

static void on_drained(void *ud)
{
    finish_ops(ud, OP_FLUSH, NULL, NULL);
}

/* A receiver waits on s: m is its message. */
static void hand(void *ud, sub *s, msg *m)
{
    (void)ud;
    op *o = s->receiver;
    o->m = m;
    op_finish(o, NULL, NULL);
}

static void dropped(void *ud, sub *s)
{
    lclient *c = ud;
    md_log_warn("mqtt %s: the handler of '%s' does not keep up; incoming messages "
                "beyond %d or %zu bytes are dropped until it does",
                c->name, s->filter, c->subs.budget.max_count, c->subs.budget.max_bytes);
}

static const md_mqtt_subs_fns dispatch_fns = {.hand = hand, .dropped = dropped};

static void on_message(void *ud, const char *topic, const void *payload, int len, int qos,
                       bool retain)
{
    lclient *c = ud;
    md_mqtt_subs_dispatch(&c->subs, topic, payload, (size_t)len, qos, retain,
                          &dispatch_fns, c);
}

static void on_subscribed(void *ud, int mid, int granted)
{
    lclient *c = ud;
    sub *s = md_mqtt_subs_by_mid(&c->subs, mid);
    if (!s)
        return;
    s->mid = 0;
    if (granted >= 128)
        md_log_warn("mqtt %s: the broker refused the subscription '%s'", c->name,
                    s->filter);
    if (s->suback) {
        op *o = s->suback;
        o->result = granted >= 128 ? -1 : s->id;
        op_finish(o, NULL, NULL);
    }
}

static const md_mqtt_handlers handlers = {
    .state = on_state,
    .delivered = on_delivered,
    .drained = on_drained,
    .message = on_message,
    .subscribed = on_subscribed,
};

/* }===== */

/* {===== arguments ===== */

static lclient *check_client(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->m)
        luaL_error(L, "attempt to use a closed MQTT client");
    return c;
}

static int check_qos(lua_State *L, int arg)
{
    lua_Integer q = luaL_optinteger(L, arg, 0);
    luaL_argcheck(L, q >= 0 && q <= 2, arg, "QoS must be 0, 1 or 2");
    return (int)q;
}

static int64_t opt_timeout_ms(lua_State *L, int arg)
{
    if (lua_isnoneornil(L, arg))
        return -1;
    lua_Number s = luaL_checknumber(L, arg);
    luaL_argcheck(L, s >= 0 && s <= 1e9, arg, "timeout must be a number of seconds >= 0");
    return (int64_t)(s * 1000.0 + 0.5);
}

/* }===== */

/* {===== methods ===== */

/* OP_CONNECT and OP_FLUSH give true, OP_PUBLISH the message id. */
static int done_results(lua_State *L, void *p)
{
    op *o = p;
    int n = 1;
    if (o->code)
        n = push_failure(L, o);
    else if (o->kind == OP_PUBLISH)
        lua_pushinteger(L, o->mid);
    else
        lua_pushboolean(L, 1);
    free(o);
    return n;
}

/* c:wait_connected([timeout]): true once connected. Until the first
 * connection, a failed attempt (also one before the call) ends the wait
 * with nil, message, code; after it, the client keeps trying and the wait
 * lasts until it is back or the timeout. */
static int client_wait_connected(lua_State *L)
{
    lclient *c = check_client(L);
    int64_t ms = opt_timeout_ms(L, 2);
    op *o = new_op(L, c, OP_CONNECT);
    if (md_mqtt_connected(c->m)) {
        op_finish(o, NULL, NULL);
    } else if (c->failures && !c->ever_connected) {
        md_mqtt_stats st;
        md_mqtt_get_stats(c->m, &st);
        op_finish(o, st.last_code ? st.last_code : "connect",
                  st.last_error ? st.last_error : "the connection failed");
    } else if (ms >= 0) {
        md_wait_timeout(o->wait, ms, "MQTT connect");
    }
    return md_task_yield(L, o->wait, done_results);
}

static int publish_failure(lua_State *L, lclient *c, int rc)
{
    if (rc == -MD_MQTT_ENOTCONN)
        return md_err_pushf(
            L, rc,
            "publish to %s: not connected, and QoS 0 messages are not "
            "queued (use QoS 1 to have them delivered after the reconnect)",
            c->name);
    if (rc == -MD_MQTT_EFULL) {
        md_mqtt_stats st;
        md_mqtt_get_stats(c->m, &st);
        return md_err_pushf(L, rc,
                            "publish to %s: the outgoing queue is full (%d messages not "
                            "yet acknowledged); the message was dropped",
                            c->name, st.queued);
    }
    return md_err_pushf(L, rc, "publish to %s: %s", c->name, md_strerror(rc));
}

static int bad_topic(lua_State *L, const char *topic)
{
    return luaL_argerror(L, 2,
                         lua_pushfstring(L,
                                         "'%s' is not a topic to publish to (no + or #, "
                                         "not empty, UTF-8)",
                                         topic));
}

/* c:publish(topic, payload, qos, retain [, wait [, timeout]]). Without
 * wait, libmosquitto checks the topic (once, not twice: this is the path
 * that bursts take). */
static int client_publish(lua_State *L)
{
    lclient *c = check_client(L);
    const char *topic = luaL_checkstring(L, 2);
    size_t len;
    const char *payload = luaL_checklstring(L, 3, &len);
    int qos = check_qos(L, 4);
    bool retain = lua_toboolean(L, 5);
    bool wait = lua_toboolean(L, 6) && qos > 0;
    int64_t ms = opt_timeout_ms(L, 7);
    if (!wait) {
        int mid = 0;
        int rc = md_mqtt_publish(c->m, topic, payload, len, qos, retain, NULL, &mid);
        if (rc == -MD_MQTT_ETOPIC)
            return bad_topic(L, topic);
        if (rc == -MD_MQTT_ETOOLARGE)
            return luaL_argerror(L, 3, "payload too large for MQTT");
        if (rc < 0)
            return publish_failure(L, c, rc);
        lua_pushinteger(L, mid);
        return 1;
    }
    if (md_mqtt_check_topic(topic, false) < 0)
        return bad_topic(L, topic);
    op *o = new_op(L, c, OP_PUBLISH);
    int rc = md_mqtt_publish(c->m, topic, payload, len, qos, retain, o, &o->mid);
    if (rc < 0) {
        op_unlink(o);
        md_task_done(o->wait);
        o->code = md_err_token(rc);
        snprintf(o->error, sizeof o->error, "publish to %s: %s", c->name,
                 md_strerror(rc));
    } else if (ms >= 0) {
        md_wait_timeout(o->wait, ms, "MQTT publish");
    }
    return md_task_yield(L, o->wait, done_results);
}

static int subscribe_results(lua_State *L, void *p)
{
    op *o = p;
    int n = 1;
    if (o->code) {
        n = push_failure(L, o);
    } else if (o->result < 0) {
        n = md_err_pushf(L, -ECONNREFUSED, "the broker refused the subscription");
    } else {
        lua_pushinteger(L, o->result);
    }
    free(o);
    return n;
}

static void remove_sub(lclient *c, sub *s)
{
    if (s->receiver)
        op_finish(s->receiver, NULL, NULL); /* no message: the end */
    if (s->suback) {
        op *o = s->suback;
        o->result = -1;
        op_finish(o, "closed", "the subscription was removed");
    }
    md_mqtt_subs_remove(&c->subs, s);
}

/* c:subscribe(filter, qos) -> id: waits for the broker's SUBACK when
 * connected; otherwise the subscription is made when the connection is. */
static int client_subscribe(lua_State *L)
{
    lclient *c = check_client(L);
    const char *filter = luaL_checkstring(L, 2);
    int qos = check_qos(L, 3);
    if (md_mqtt_check_topic(filter, true) < 0)
        return luaL_argerror(
            L, 2, lua_pushfstring(L, "'%s' is not a valid topic filter", filter));
    md_task_check(L);
    sub *s = md_mqtt_subs_add(&c->subs, filter, qos);
    if (!s)
        return luaL_error(L, "out of memory");
    op *o = new_op(L, c, OP_SUBSCRIBE);
    o->result = s->id;
    int rc = md_mqtt_subscribe(c->m, filter, qos, &s->mid);
    if (rc == 0) {
        o->s = s;
        s->suback = o;
    } else {
        s->mid = 0;
        op_finish(o, NULL, NULL); /* subscribed when connected */
    }
    return md_task_yield(L, o->wait, subscribe_results);
}

static int receive_results(lua_State *L, void *p)
{
    op *o = p;
    msg *m = o->m;
    free(o);
    if (!m)
        return 0;
    lua_pushstring(L, m->topic);
    lua_pushlstring(L, m->data, m->len);
    lua_pushinteger(L, m->qos);
    lua_pushboolean(L, m->retain);
    free(m);
    return 4;
}

/* c:receive(id) -> topic, payload, qos, retain; nothing once the
 * subscription or the client is closed. */
static int client_receive(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    lua_Integer id = luaL_checkinteger(L, 2);
    sub *s = c->m ? md_mqtt_subs_find(&c->subs, id) : NULL;
    if (!s)
        return 0;
    if (s->receiver)
        return luaL_error(L, "subscription %d already has a task receiving from it",
                          (int)id);
    op *o = new_op(L, c, OP_RECEIVE);
    uint64_t dropped;
    o->m = md_mqtt_inq_pop(&s->queue, &c->subs.budget, &dropped);
    if (dropped)
        md_log_warn("mqtt %s: the handler of '%s' caught up; %llu message(s) were "
                    "dropped",
                    c->name, s->filter, (unsigned long long)dropped);
    if (o->m) {
        op_finish(o, NULL, NULL);
    } else {
        o->s = s;
        s->receiver = o;
    }
    return md_task_yield(L, o->wait, receive_results);
}

/* c:unsubscribe(id) -> true; its receive() returns nothing from now on. */
static int client_unsubscribe(lua_State *L)
{
    lclient *c = check_client(L);
    sub *s = md_mqtt_subs_find(&c->subs, luaL_checkinteger(L, 2));
    if (s) {
        if (!md_mqtt_subs_shared(&c->subs, s))
            md_mqtt_unsubscribe(c->m, s->filter);
        remove_sub(c, s);
    }
    lua_pushboolean(L, s != NULL);
    return 1;
}

static int event_results(lua_State *L, void *p)
{
    op *o = p;
    event *e = o->e;
    free(o);
    if (!e)
        return 0;
    int n = 1;
    lua_pushstring(L, e->ev == MD_MQTT_CONNECTED ? "connected" : "disconnected");
    if (e->ev == MD_MQTT_CONNECTED) {
        lua_pushboolean(L, e->flag);
        n = 2;
    } else {
        lua_pushstring(L, e->message);
        lua_pushstring(L, e->code);
        n = 3;
    }
    free(e);
    return n;
}

/* c:next_event() -> "connected", session_present | "disconnected", message,
 * code | nothing once closed. Events are kept from the first call on. */
static int client_next_event(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->m)
        return 0;
    c->listening = true;
    op *o = new_op(L, c, OP_EVENT);
    o->e = md_mqtt_events_pop(&c->events);
    if (o->e)
        op_finish(o, NULL, NULL);
    return md_task_yield(L, o->wait, event_results);
}

/* c:flush([timeout]) -> true once every queued QoS 1/2 message is acknowledged. */
static int client_flush(lua_State *L)
{
    lclient *c = check_client(L);
    int64_t ms = opt_timeout_ms(L, 2);
    op *o = new_op(L, c, OP_FLUSH);
    md_mqtt_stats st;
    md_mqtt_get_stats(c->m, &st);
    if (st.queued == 0)
        op_finish(o, NULL, NULL);
    else if (ms >= 0)
        md_wait_timeout(o->wait, ms, "MQTT flush");
    return md_task_yield(L, o->wait, done_results);
}

static int client_status(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->m) {
        lua_pushliteral(L, "closed");
        return 1;
    }
    md_mqtt_stats st;
    md_mqtt_get_stats(c->m, &st);
    lua_pushstring(L, st.state);
    return 1;
}

static void set_int(lua_State *L, const char *k, lua_Integer v)
{
    lua_pushinteger(L, v);
    lua_setfield(L, -2, k);
}

static int client_stats(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    lua_createtable(L, 0, 16);
    if (!c->m) {
        lua_pushliteral(L, "closed");
        lua_setfield(L, -2, "state");
        lua_pushboolean(L, 0);
        lua_setfield(L, -2, "connected");
        return 1;
    }
    md_mqtt_stats st;
    md_mqtt_get_stats(c->m, &st);
    lua_pushstring(L, st.state);
    lua_setfield(L, -2, "state");
    lua_pushboolean(L, st.connected);
    lua_setfield(L, -2, "connected");
    set_int(L, "connects", (lua_Integer)st.connects);
    set_int(L, "reconnects", (lua_Integer)(st.connects ? st.connects - 1 : 0));
    set_int(L, "attempts", (lua_Integer)st.attempts);
    set_int(L, "disconnects", (lua_Integer)st.disconnects);
    set_int(L, "published", (lua_Integer)st.published);
    set_int(L, "delivered", (lua_Integer)st.delivered);
    set_int(L, "dropped", (lua_Integer)st.dropped);
    set_int(L, "not_sent", (lua_Integer)st.not_sent);
    set_int(L, "received", (lua_Integer)st.received);
    set_int(L, "received_dropped", (lua_Integer)c->subs.budget.dropped);
    set_int(L, "queued", st.queued);
    set_int(L, "queued_bytes", (lua_Integer)st.queued_bytes);
    if (st.last_code) {
        lua_pushstring(L, st.last_error);
        lua_setfield(L, -2, "last_error");
        lua_pushstring(L, st.last_code);
        lua_setfield(L, -2, "last_code");
    }
    return 1;
}

/* Idempotent; also __gc and __close. Waiting calls end with "closed".
 * While the engine stops (a signal, md.exit, shutdown) the connection just
 * ends, without DISCONNECT: the engine is going away, and the broker
 * publishes the last will to say so. Otherwise the close is clean. */
static int client_close(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    if (!c->m)
        return 0;
    char why[250];
    snprintf(why, sizeof why, "the MQTT client for %s was closed", c->name);
    while (c->subs.head)
        remove_sub(c, c->subs.head);
    finish_ops(c, -1, "closed", why);
    md_mqtt_events_clear(&c->events);
    md_mqtt *m = c->m;
    c->m = NULL;
    bool stopping = md_engine_closing(c->E) || md_loop_stopped(md_engine_loop(c->E));
    md_mqtt_close(m, !stopping, md_engine_closing(c->E));
    return 0;
}

static int client_tostring(lua_State *L)
{
    lclient *c = luaL_checkudata(L, 1, CLIENT_MT);
    lua_pushfstring(L, "mqtt client %s%s", c->name, c->m ? "" : " (closed)");
    return 1;
}

/* }===== */

/* {===== core.new and helpers ===== */

static const char *opt_str(lua_State *L, int t, const char *k)
{
    int ty = lua_getfield(L, t, k);
    const char *s = NULL;
    if (ty == LUA_TSTRING)
        s = lua_tostring(L, -1);
    else if (ty != LUA_TNIL)
        luaL_error(L, "bad field '%s': expected a string, got %s", k,
                   lua_typename(L, ty));
    lua_pop(L, 1); /* the table keeps the string alive */
    return s;
}

static lua_Integer opt_int(lua_State *L, int t, const char *k, lua_Integer dflt,
                           lua_Integer lo, lua_Integer hi)
{
    lua_Integer v = dflt;
    if (lua_getfield(L, t, k) != LUA_TNIL) {
        int isnum;
        v = lua_tointegerx(L, -1, &isnum);
        if (!isnum)
            luaL_error(L, "bad field '%s': expected an integer", k);
    }
    lua_pop(L, 1);
    if (v < lo || v > hi)
        luaL_error(L, "bad field '%s': %d is outside %d..%d", k, (int)v, (int)lo,
                   (int)hi);
    return v;
}

static bool opt_bool(lua_State *L, int t, const char *k, bool dflt)
{
    int ty = lua_getfield(L, t, k);
    bool v = ty == LUA_TNIL ? dflt : lua_toboolean(L, -1);
    lua_pop(L, 1);
    return v;
}

static int opt_ms(lua_State *L, int t, const char *k, double dflt)
{
    int ty = lua_getfield(L, t, k);
    double s = ty == LUA_TNIL ? dflt : luaL_checknumber(L, -1);
    lua_pop(L, 1);
    if (!(s >= 0.001 && s <= 86400))
        luaL_error(L, "bad field '%s': expected seconds between 0.001 and 86400", k);
    return (int)(s * 1000.0 + 0.5);
}

/* core.new(cfg) -> client (connecting in the background), or nil, message, code */
static int mqtt_new(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    md_mqtt_config cfg = {0};
    cfg.host = opt_str(L, 1, "host");
    if (!cfg.host)
        return luaL_error(L,
                          "bad field 'host': expected the broker's host name or address");
    cfg.tls = opt_bool(L, 1, "tls", false);
    cfg.port = (int)opt_int(L, 1, "port", cfg.tls ? 8883 : 1883, 1, 65535);
    cfg.client_id = opt_str(L, 1, "client_id");
    cfg.username = opt_str(L, 1, "username");
    cfg.password = opt_str(L, 1, "password");
    cfg.keepalive = (int)opt_int(L, 1, "keepalive", 30, 5, 65535);
    cfg.clean_session = opt_bool(L, 1, "clean", true);
    cfg.protocol = (int)opt_int(L, 1, "protocol", 3, 3, 5);
    cfg.ca_file = opt_str(L, 1, "ca_file");
    cfg.ca_path = opt_str(L, 1, "ca_path");
    cfg.cert_file = opt_str(L, 1, "cert_file");
    cfg.key_file = opt_str(L, 1, "key_file");
    cfg.tls_insecure = opt_bool(L, 1, "tls_insecure", false);
    cfg.will_topic = opt_str(L, 1, "will_topic");
    size_t wlen = 0;
    if (lua_getfield(L, 1, "will_payload") == LUA_TSTRING)
        cfg.will_payload = lua_tolstring(L, -1, &wlen);
    lua_pop(L, 1);
    cfg.will_len = (int)wlen;
    cfg.will_qos = (int)opt_int(L, 1, "will_qos", 1, 0, 2);
    cfg.will_retain = opt_bool(L, 1, "will_retain", true);
    cfg.max_queued = (int)opt_int(L, 1, "max_queued", 10000, 1, MD_MQTT_MAX_QUEUED);
    cfg.max_queued_bytes =
        (size_t)opt_int(L, 1, "max_queued_bytes", 16 << 20, 1, (lua_Integer)1 << 40);
    cfg.max_inflight = (int)opt_int(L, 1, "max_inflight", 20, 1, 65535);
    cfg.connect_timeout_ms = opt_ms(L, 1, "connect_timeout", 10);
    cfg.backoff_min_ms = opt_ms(L, 1, "backoff_min", 1);
    cfg.backoff_max_ms = opt_ms(L, 1, "backoff_max", 5);
    if (cfg.backoff_max_ms < cfg.backoff_min_ms)
        cfg.backoff_max_ms = cfg.backoff_min_ms;
    cfg.name = opt_str(L, 1, "name");
    int max_pending = (int)opt_int(L, 1, "max_pending", 10000, 1, 1 << 24);
    size_t max_pending_bytes =
        (size_t)opt_int(L, 1, "max_pending_bytes", 16 << 20, 1, (lua_Integer)1 << 40);

    lclient *c = lua_newuserdatauv(L, sizeof *c, 0);
    memset(c, 0, sizeof *c); /* closed until the client exists */
    luaL_setmetatable(L, CLIENT_MT);
    c->E = md_engine_of(L);
    c->subs.budget.max_count = max_pending;
    c->events.max = MAX_EVENTS;
    c->subs.budget.max_bytes = max_pending_bytes;
    if (cfg.name)
        snprintf(c->name, sizeof c->name, "%s", cfg.name);
    else
        snprintf(c->name, sizeof c->name, "%s:%d", cfg.host, cfg.port);
    char err[300];
    const char *code = "invalid";
    c->m = md_mqtt_new(md_engine_loop(c->E), &cfg, &handlers, c, err, sizeof err, &code);
    if (!c->m) {
        return md_err_pusht(L, code, "MQTT client for %s: %s", c->name, err);
    }
    return 1;
}

static void need_library(lua_State *L)
{
    char err[300];
    if (md_mqtt_library(err, sizeof err) < 0)
        luaL_error(L, "%s", err);
}

/* core.matches(filter, topic) -> bool */
static int mqtt_matches(lua_State *L)
{
    const char *filter = luaL_checkstring(L, 1);
    const char *topic = luaL_checkstring(L, 2);
    need_library(L);
    lua_pushboolean(L, md_mqtt_check_topic(filter, true) == 0 &&
                           md_mqtt_check_topic(topic, false) == 0 &&
                           md_mqtt_matches(filter, topic));
    return 1;
}

/* core.check_topic(topic [, is_filter]) -> bool */
static int mqtt_check_topic(lua_State *L)
{
    const char *topic = luaL_checkstring(L, 1);
    need_library(L);
    lua_pushboolean(L, md_mqtt_check_topic(topic, lua_toboolean(L, 2)) == 0);
    return 1;
}

static const luaL_Reg client_methods[] = {
    {"wait_connected", client_wait_connected},
    {"publish", client_publish},
    {"subscribe", client_subscribe},
    {"receive", client_receive},
    {"unsubscribe", client_unsubscribe},
    {"next_event", client_next_event},
    {"flush", client_flush},
    {"status", client_status},
    {"stats", client_stats},
    {"close", client_close},
    {NULL, NULL},
};

static const luaL_Reg client_meta[] = {
    {"__gc", client_close},
    {"__close", client_close},
    {"__tostring", client_tostring},
    {NULL, NULL},
};

static const luaL_Reg mqtt_funcs[] = {
    {"new", mqtt_new},
    {"matches", mqtt_matches},
    {"check_topic", mqtt_check_topic},
    {NULL, NULL},
};

int luaopen_moondog_mqtt_core(lua_State *L)
{
    if (luaL_newmetatable(L, CLIENT_MT)) {
        luaL_setfuncs(L, client_meta, 0);
        luaL_newlib(L, client_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_getfield(L, -1, "__index"); /* stack: mt, methods */
    luaL_newlib(L, mqtt_funcs);
    /* moondog.mqtt adds its Lua methods to the same table */
    lua_insert(L, -2);
    lua_setfield(L, -2, "client_methods");
    lua_remove(L, -2); /* mt */
    return 1;
}

/* }===== */
