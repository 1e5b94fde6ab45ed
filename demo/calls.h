/* calls.h - the demo's outgoing HTTP calls (libcurl through mhdctx_curl_perform). */
#ifndef DEMO_CALLS_H
#define DEMO_CALLS_H

#include <mhdctx.h>

/* Whether the demo was built with libcurl. */
bool calls_available(void);
/* Only http://127.0.0.1, localhost or [::1] URLs: the demo never calls a host a client
 * chose (the W3C test endpoint receives URLs in its request body). */
bool calls_url_is_loopback(const char *url);
/* GET @url for the current context; *body is owned (free()). 0 on success. */
int calls_get(const char *url, unsigned *status, char **body, size_t *len);
/* POST @json to @url for the current context. 0 on success. */
int calls_post_json(const char *url, const char *json, unsigned *status);

#endif
