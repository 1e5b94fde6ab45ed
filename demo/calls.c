/* calls.c - outgoing calls of the demo: every one goes through mhdctx_curl_perform(),
 * so it carries traceparent, tracestate and X-Request-Id and is logged. */
#include "config.h"

#include "calls.h"

#include <stdlib.h>
#include <string.h>

bool calls_url_is_loopback(const char *url)
{
    static const char *const allowed[] = {"http://127.0.0.1:", "http://127.0.0.1/",
                                          "http://localhost:", "http://localhost/",
                                          "http://[::1]:",     "http://[::1]/"};
    if (url == NULL || strchr(url, '@') || strpbrk(url, " \t\r\n"))
        return false; /* user info could smuggle another host */
    for (size_t i = 0; i < sizeof allowed / sizeof *allowed; i++) {
        if (strncmp(url, allowed[i], strlen(allowed[i])) == 0)
            return true;
    }
    return false;
}

#ifdef MHDCTX_HAVE_CURL
#include <mhdctx_curl.h>

bool calls_available(void)
{
    return true;
}

struct sink {
    char *data;
    size_t len;
};

static size_t collect(char *chunk, size_t size, size_t n, void *arg)
{
    struct sink *sink = arg;
    size_t bytes = size * n;
    if (sink->len + bytes > 1024 * 1024)
        return 0; /* the demo's peers answer small bodies: refuse the rest */
    char *grown = realloc(sink->data, sink->len + bytes + 1);
    if (grown == NULL)
        return 0;
    memcpy(grown + sink->len, chunk, bytes);
    sink->data = grown;
    sink->len += bytes;
    sink->data[sink->len] = '\0';
    return bytes;
}

static CURL *new_easy(const char *url, struct sink *sink)
{
    CURL *easy = curl_easy_init();
    if (easy == NULL)
        return NULL;
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, sink);
    return easy;
}

int calls_get(const char *url, unsigned *status, char **body, size_t *len)
{
    struct sink sink = {NULL, 0};
    CURL *easy = new_easy(url, &sink);
    if (easy == NULL)
        return -1;
    CURLcode rc = mhdctx_curl_perform(easy, NULL, NULL);
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(easy);
    *status = (unsigned)code;
    *body = sink.data;
    *len = sink.len;
    return rc == CURLE_OK ? 0 : -1;
}

int calls_post_json(const char *url, const char *json, unsigned *status)
{
    struct sink sink = {NULL, 0};
    CURL *easy = new_easy(url, &sink);
    if (easy == NULL)
        return -1;
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(easy, CURLOPT_POSTFIELDS, json);
    CURLcode rc = headers ? mhdctx_curl_perform(easy, NULL, headers) : CURLE_OUT_OF_MEMORY;
    long code = 0;
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    free(sink.data);
    *status = (unsigned)code;
    return rc == CURLE_OK ? 0 : -1;
}

#else /* built without libcurl: the routes that call out answer 501 */

bool calls_available(void)
{
    return false;
}

int calls_get(const char *url, unsigned *status, char **body, size_t *len)
{
    (void)url;
    *status = 0, *body = NULL, *len = 0;
    return -1;
}

int calls_post_json(const char *url, const char *json, unsigned *status)
{
    (void)url, (void)json;
    *status = 0;
    return -1;
}
#endif
