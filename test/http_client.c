/*
 * http_client.c - see http_client.h. A test helper: clarity over speed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* memmem */
#endif

#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* Larger heads are treated as malformed (MHD's own limit is far below). */
#define HTTP_MAX_HEAD (256u * 1024u)

struct http_conn {
    int fd;
    char *buf; /* received, not yet consumed bytes */
    size_t len;
    size_t cap;
    bool eof;   /* the peer closed its side */
    bool reset; /* the peer reset the connection */
};

const char *http_strerror(int result)
{
    switch (result) {
    case HTTP_OK:
        return "ok";
    case HTTP_ECONNECT:
        return "cannot connect";
    case HTTP_ESEND:
        return "send failed";
    case HTTP_ETIMEOUT:
        return "timeout";
    case HTTP_ECLOSED:
        return "connection closed without a response";
    case HTTP_ERESET:
        return "connection reset";
    case HTTP_EPROTO:
        return "malformed response";
    case HTTP_ENOMEM:
        return "out of memory";
    case HTTP_EINVAL:
        return "invalid argument";
    default:
        return "unknown error";
    }
}

/* ---- connection ------------------------------------------------------------------- */

int http_set_timeout_ms(http_conn *c, unsigned timeout_ms)
{
    if (c == NULL || timeout_ms == 0)
        return HTTP_EINVAL;
    struct timeval tv = {.tv_sec = (time_t)(timeout_ms / 1000u),
                         .tv_usec = (suseconds_t)((timeout_ms % 1000u) * 1000u)};
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0 ||
        setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv) != 0)
        return HTTP_EINVAL;
    return HTTP_OK;
}

int http_connect(uint16_t port, http_conn **out)
{
    if (out == NULL)
        return HTTP_EINVAL;
    *out = NULL;
    http_conn *c = calloc(1, sizeof *c);
    if (c == NULL)
        return HTTP_ENOMEM;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        free(c);
        return HTTP_ECONNECT;
    }
    int one = 1;
    (void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (http_set_timeout_ms(c, HTTP_DEFAULT_TIMEOUT_MS) != HTTP_OK) {
        http_close(c);
        return HTTP_ECONNECT;
    }
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int rc;
    do {
        rc = connect(c->fd, (const struct sockaddr *)&addr, sizeof addr);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        http_close(c);
        return HTTP_ECONNECT;
    }
    *out = c;
    return HTTP_OK;
}

void http_close(http_conn *c)
{
    if (c == NULL)
        return;
    if (c->fd >= 0)
        close(c->fd);
    free(c->buf);
    free(c);
}

int http_send(http_conn *c, const void *data, size_t len)
{
    if (c == NULL || (data == NULL && len > 0))
        return HTTP_EINVAL;
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return HTTP_ESEND;
        }
        p += n;
        len -= (size_t)n;
    }
    return HTTP_OK;
}

int http_send_str(http_conn *c, const char *s)
{
    if (s == NULL)
        return HTTP_EINVAL;
    return http_send(c, s, strlen(s));
}

int http_shutdown_write(http_conn *c)
{
    if (c == NULL)
        return HTTP_EINVAL;
    return shutdown(c->fd, SHUT_WR) == 0 ? HTTP_OK : HTTP_ESEND;
}

/* Receives more bytes into the buffer. HTTP_OK when some arrived; HTTP_ECLOSED at
 * end-of-file; HTTP_ERESET; HTTP_ETIMEOUT; HTTP_ENOMEM. */
static int fill(http_conn *c)
{
    if (c->reset)
        return HTTP_ERESET;
    if (c->eof)
        return HTTP_ECLOSED;
    if (c->cap - c->len < 4096) {
        size_t cap = c->cap ? c->cap * 2 : 16384;
        char *grown = realloc(c->buf, cap);
        if (grown == NULL)
            return HTTP_ENOMEM;
        c->buf = grown;
        c->cap = cap;
    }
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
        if (n > 0) {
            c->len += (size_t)n;
            return HTTP_OK;
        }
        if (n == 0) {
            c->eof = true;
            return HTTP_ECLOSED;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return HTTP_ETIMEOUT;
        c->reset = true; /* ECONNRESET, EPIPE, ... */
        return HTTP_ERESET;
    }
}

static void consume(http_conn *c, size_t n)
{
    memmove(c->buf, c->buf + n, c->len - n);
    c->len -= n;
}

int http_wait_closed(http_conn *c, size_t *extra)
{
    if (c == NULL)
        return HTTP_EINVAL;
    int rc;
    do {
        rc = fill(c);
    } while (rc == HTTP_OK);
    if (extra)
        *extra = c->len;
    return (rc == HTTP_ECLOSED || rc == HTTP_ERESET) ? HTTP_OK : rc;
}

/* ---- response parsing ------------------------------------------------------------- */

void http_response_free(http_response *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->n_headers; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    free(r->reason);
    free(r->version);
    free(r->body);
    free(r);
}

static char *dup_range(const char *s, size_t n)
{
    char *copy = malloc(n + 1);
    if (copy) {
        memcpy(copy, s, n);
        copy[n] = '\0';
    }
    return copy;
}

static bool is_blank(char ch)
{
    return ch == ' ' || ch == '\t';
}

static int add_header(http_response *r, const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (colon == NULL || colon == line)
        return HTTP_EPROTO;
    size_t name_len = (size_t)(colon - line);
    const char *value = colon + 1;
    size_t value_len = len - name_len - 1;
    while (value_len > 0 && is_blank(value[0])) {
        value++;
        value_len--;
    }
    while (value_len > 0 && is_blank(value[value_len - 1]))
        value_len--;
    http_field *grown = realloc(r->headers, (r->n_headers + 1) * sizeof *grown);
    if (grown == NULL)
        return HTTP_ENOMEM;
    r->headers = grown;
    http_field *h = &grown[r->n_headers];
    h->name = dup_range(line, name_len);
    h->value = dup_range(value, value_len);
    if (h->name == NULL || h->value == NULL) {
        free(h->name);
        free(h->value);
        return HTTP_ENOMEM;
    }
    r->n_headers++;
    return HTTP_OK;
}

/* Parses the head (status line and headers, @p len bytes up to and excluding the blank
 * line). */
static int parse_head(http_response *r, const char *head, size_t len)
{
    const char *eol = memmem(head, len, "\r\n", 2);
    size_t line_len = eol ? (size_t)(eol - head) : len;
    /* "HTTP/1.1 200 OK" */
    const char *sp1 = memchr(head, ' ', line_len);
    bool icy = sp1 == head + 3 && strncmp(head, "ICY", 3) == 0; /* MHD_ICY_FLAG's answers */
    if (sp1 == NULL || (!icy && ((size_t)(sp1 - head) < 5 || strncmp(head, "HTTP/", 5) != 0)))
        return HTTP_EPROTO;
    const char *code = sp1 + 1;
    size_t rest = line_len - (size_t)(code - head);
    if (rest < 3)
        return HTTP_EPROTO;
    int status = 0;
    for (int i = 0; i < 3; i++) {
        if (code[i] < '0' || code[i] > '9')
            return HTTP_EPROTO;
        status = status * 10 + (code[i] - '0');
    }
    if (rest > 3 && code[3] != ' ')
        return HTTP_EPROTO;
    r->status = status;
    r->version = dup_range(head, (size_t)(sp1 - head));
    r->reason = rest > 4 ? dup_range(code + 4, rest - 4) : dup_range("", 0);
    if (r->version == NULL || r->reason == NULL)
        return HTTP_ENOMEM;
    size_t pos = eol ? line_len + 2 : len;
    while (pos < len) {
        const char *line = head + pos;
        const char *end = memmem(line, len - pos, "\r\n", 2);
        size_t n = end ? (size_t)(end - line) : len - pos;
        if (n > 0 && is_blank(line[0]))
            return HTTP_EPROTO; /* obsolete line folding */
        int rc = add_header(r, line, n);
        if (rc != HTTP_OK)
            return rc;
        pos += n + 2;
    }
    return HTTP_OK;
}

/* Ensures at least @p need buffered bytes. */
static int need_bytes(http_conn *c, size_t need)
{
    while (c->len < need) {
        int rc = fill(c);
        if (rc != HTTP_OK)
            return rc == HTTP_ECLOSED ? HTTP_EPROTO : rc; /* truncated */
    }
    return HTTP_OK;
}

/* Position just after the next CRLF at or after @p from, filling as needed. */
static int find_crlf(http_conn *c, size_t from, size_t *after)
{
    for (;;) {
        if (c->len > from) {
            const char *p = memmem(c->buf + from, c->len - from, "\r\n", 2);
            if (p) {
                *after = (size_t)(p - c->buf) + 2;
                return HTTP_OK;
            }
        }
        if (c->len > HTTP_MAX_HEAD + from)
            return HTTP_EPROTO;
        int rc = fill(c);
        if (rc != HTTP_OK)
            return rc == HTTP_ECLOSED ? HTTP_EPROTO : rc;
    }
}

static int body_append(http_response *r, const char *data, size_t n)
{
    char *grown = realloc(r->body, r->body_len + n + 1);
    if (grown == NULL)
        return HTTP_ENOMEM;
    r->body = grown;
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
    return HTTP_OK;
}

static int read_chunked(http_conn *c, http_response *r)
{
    for (;;) {
        size_t after;
        int rc = find_crlf(c, 0, &after);
        if (rc != HTTP_OK)
            return rc;
        char *end;
        errno = 0;
        unsigned long long size = strtoull(c->buf, &end, 16);
        if (end == c->buf || errno != 0 || size > (1ull << 32))
            return HTTP_EPROTO;
        consume(c, after);
        if (size == 0) {
            /* trailers up to the blank line */
            for (;;) {
                rc = find_crlf(c, 0, &after);
                if (rc != HTTP_OK)
                    return rc;
                consume(c, after);
                if (after == 2)
                    return HTTP_OK;
            }
        }
        rc = need_bytes(c, (size_t)size + 2);
        if (rc != HTTP_OK)
            return rc;
        if (memcmp(c->buf + size, "\r\n", 2) != 0)
            return HTTP_EPROTO;
        rc = body_append(r, c->buf, (size_t)size);
        if (rc != HTTP_OK)
            return rc;
        consume(c, (size_t)size + 2);
    }
}

static int read_body(http_conn *c, http_response *r)
{
    const char *te = http_header(r, "Transfer-Encoding");
    const char *cl = http_header(r, "Content-Length");
    if ((r->status >= 100 && r->status < 200) || r->status == 204 || r->status == 304)
        return HTTP_OK;
    if (te && strcasecmp(te, "chunked") == 0)
        return read_chunked(c, r);
    if (cl) {
        if (http_header_count(r, "Content-Length") != 1)
            return HTTP_EPROTO;
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (end == cl || *end != '\0' || errno != 0 || n > (1ull << 32))
            return HTTP_EPROTO;
        int rc = need_bytes(c, (size_t)n);
        if (rc != HTTP_OK)
            return rc;
        rc = body_append(r, c->buf, (size_t)n);
        if (rc == HTTP_OK)
            consume(c, (size_t)n);
        return rc;
    }
    /* Until the server closes. */
    for (;;) {
        int rc = fill(c);
        if (rc == HTTP_ECLOSED)
            break;
        if (rc != HTTP_OK)
            return rc;
    }
    int rc = body_append(r, c->buf, c->len);
    if (rc == HTTP_OK)
        consume(c, c->len);
    r->closed = true;
    return rc;
}

static int read_one(http_conn *c, http_response **out)
{
    /* The head: up to the first blank line. */
    const char *end = NULL;
    size_t scanned = 0;
    while ((end = c->len ? memmem(c->buf + scanned, c->len - scanned, "\r\n\r\n", 4) : NULL) ==
           NULL) {
        if (c->len > HTTP_MAX_HEAD)
            return HTTP_EPROTO;
        scanned = c->len > 3 ? c->len - 3 : 0;
        int rc = fill(c);
        if (rc == HTTP_ECLOSED || rc == HTTP_ERESET) {
            if (c->len == 0)
                return rc; /* nothing at all was answered */
            return rc == HTTP_ECLOSED ? HTTP_EPROTO : rc;
        }
        if (rc != HTTP_OK)
            return rc;
    }
    size_t head_len = (size_t)(end - c->buf);
    http_response *r = calloc(1, sizeof *r);
    if (r == NULL)
        return HTTP_ENOMEM;
    r->body = calloc(1, 1);
    int rc = r->body ? parse_head(r, c->buf, head_len) : HTTP_ENOMEM;
    if (rc == HTTP_OK) {
        consume(c, head_len + 4);
        rc = read_body(c, r);
    }
    if (rc != HTTP_OK) {
        http_response_free(r);
        return rc;
    }
    *out = r;
    return HTTP_OK;
}

int http_read_response(http_conn *c, http_response **out)
{
    if (c == NULL || out == NULL)
        return HTTP_EINVAL;
    *out = NULL;
    for (;;) {
        http_response *r = NULL;
        int rc = read_one(c, &r);
        if (rc != HTTP_OK)
            return rc;
        if (r->status >= 200 || r->status < 100) {
            *out = r;
            return HTTP_OK;
        }
        http_response_free(r); /* 1xx interim: skip */
    }
}

int http_roundtrip(uint16_t port, const void *request, size_t len, http_response **out)
{
    if (out == NULL)
        return HTTP_EINVAL;
    *out = NULL;
    http_conn *c;
    int rc = http_connect(port, &c);
    if (rc != HTTP_OK)
        return rc;
    rc = http_send(c, request, len);
    if (rc == HTTP_OK)
        rc = http_read_response(c, out);
    http_close(c);
    return rc;
}

/* ---- header lookup ---------------------------------------------------------------- */

const char *http_header_nth(const http_response *r, const char *name, size_t n)
{
    if (r == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0) {
            if (n == 0)
                return r->headers[i].value;
            n--;
        }
    }
    return NULL;
}

const char *http_header(const http_response *r, const char *name)
{
    return http_header_nth(r, name, 0);
}

size_t http_header_count(const http_response *r, const char *name)
{
    size_t count = 0;
    if (r == NULL || name == NULL)
        return 0;
    for (size_t i = 0; i < r->n_headers; i++) {
        if (strcasecmp(r->headers[i].name, name) == 0)
            count++;
    }
    return count;
}
