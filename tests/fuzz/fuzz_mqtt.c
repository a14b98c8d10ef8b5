/*
 * fuzz_mqtt.c - libFuzzer target for the C half of MQTT command routing in
 * core/mqtt_queue.c: md_mqtt_check_topic (is a topic or filter valid) and
 * md_mqtt_matches (does a received topic match a subscription such as
 * "moondog/+/+/set"), moondog's own rules as the engine uses them.
 *
 * What is not here, and why: the command parser itself (which device and
 * point a .../set topic names, what the payload means) is Lua,
 * lua/moondog/mqtt/publish.lua's command() and moondog.devices.point.parse;
 * text parsing is at home in Lua and does not move to C for a fuzzer. It is
 * fuzzed by tests/lua/regress/17-command-parser-fuzz.lua, which runs in
 * `make test`.
 *
 * Input: the bytes up to the first NUL (or all) are a filter, the rest a
 * topic; both are C strings of at most 512 bytes.
 *
 * Contracts checked (abort on a broken one), besides crashes and sanitizer
 * reports, for a valid filter and a valid topic:
 *   - md_mqtt_matches agrees with a reference matcher written from MQTT
 *     3.1.1 section 4.7 ('+' one level, '#' last and any levels incl. the
 *     parent, '$' topics never matched by a leading wildcard);
 *   - a valid topic is a valid filter and matches itself, and a topic
 *     holds no '+' or '#';
 *   - the command subscription "moondog/+/+/set" matches exactly the topics
 *     publish.lua's pattern "^moondog/([^/]+)/([^/]+)/set$" accepts
 *     (levels may be empty for the broker, never for the Lua side:
 *     checked as that one known difference).
 *
 * Build and run: make fuzz [FUZZ_SECONDS=60], or by hand (see the
 * Makefile's FUZZ_EXTRA_mqtt for the libraries).
 *
 * Seeds (tests/fuzz/corpus/mqtt/): command topics and filters of the
 * publisher and of Home Assistant, '$SYS' topics, empty levels, a '#' in
 * the middle, UTF-8 and overlong UTF-8.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mqtt.h"
#include "check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The next level of s at *pos: its length; *pos moves past it and its '/'.
 * Returns -1 when there is no level left. */
static int next_level(const char *s, size_t *pos, bool *done, const char **start)
{
    if (*done)
        return -1;
    *start = s + *pos;
    const char *slash = strchr(*start, '/');
    int len = slash ? (int)(slash - *start) : (int)strlen(*start);
    if (slash)
        *pos += (size_t)len + 1;
    else
        *done = true;
    return len;
}

/* MQTT 3.1.1, 4.7: filter and topic are valid. */
static bool reference_match(const char *filter, const char *topic)
{
    if (topic[0] == '$' && (filter[0] == '+' || filter[0] == '#'))
        return false;
    size_t fp = 0, tp = 0;
    bool fdone = false, tdone = false;
    for (;;) {
        const char *f, *t;
        int fl = next_level(filter, &fp, &fdone, &f);
        if (fl == 1 && f[0] == '#')
            return true; /* the rest, or nothing: "a/#" matches "a" */
        int tl = next_level(topic, &tp, &tdone, &t);
        if (fl < 0 || tl < 0)
            return fl < 0 && tl < 0;
        if (fl == 1 && f[0] == '+')
            continue;
        if (fl != tl || memcmp(f, t, (size_t)fl) != 0)
            return false;
    }
}

/* publish.lua: topic:sub(#prefix + 2):match("^([^/]+)/([^/]+)/set$") */
static bool lua_command_match(const char *topic)
{
    static const char prefix[] = "moondog/";
    if (strncmp(topic, prefix, sizeof prefix - 1) != 0)
        return false;
    const char *dev = topic + sizeof prefix - 1;
    const char *s1 = strchr(dev, '/');
    if (!s1 || s1 == dev)
        return false;
    const char *name = s1 + 1;
    const char *s2 = strchr(name, '/');
    if (!s2 || s2 == name)
        return false;
    return strcmp(s2 + 1, "set") == 0;
}

static bool has_empty_level(const char *topic)
{
    return topic[0] == '/' || strstr(topic, "//") != NULL ||
           (topic[0] && topic[strlen(topic) - 1] == '/');
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static bool loaded;
    if (!loaded) {
        char err[300];
        if (md_mqtt_library(err, sizeof err) < 0) {
            fprintf(stderr, "%s\n", err);
            abort();
        }
        loaded = true;
    }
    if (size > 1024)
        return 0;
    char filter[1025], topic[1025];
    const uint8_t *nul = memchr(data, 0, size);
    size_t flen = nul ? (size_t)(nul - data) : size;
    memcpy(filter, data, flen);
    filter[flen] = '\0';
    size_t tlen = nul ? size - flen - 1 : 0;
    memcpy(topic, nul ? nul + 1 : data, tlen);
    topic[tlen] = '\0'; /* a C string: a later NUL ends it early */

    bool filter_ok = md_mqtt_check_topic(filter, true) == 0;
    bool topic_ok = md_mqtt_check_topic(topic, false) == 0;
    if (topic_ok) {
        CHECK(strpbrk(topic, "+#") == NULL);
        CHECK(md_mqtt_check_topic(topic, true) == 0);
        CHECK(md_mqtt_matches(topic, topic));
        bool routed = md_mqtt_matches("moondog/+/+/set", topic);
        if (!has_empty_level(topic))
            CHECK(routed == lua_command_match(topic));
        else if (lua_command_match(topic))
            CHECK(routed);
    }
    if (filter_ok && topic_ok)
        CHECK(md_mqtt_matches(filter, topic) == reference_match(filter, topic));
    return 0;
}
