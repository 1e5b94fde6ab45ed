/*
 * auth.c - the bearer-token hook: "Authorization: Bearer <token>" -> user id and roles.
 * Parsing is pure (RFC 6750 token68); lookup compares every stored token in constant
 * time, so the time taken tells nothing about how close a guess was.
 */
#include "middleware.h"

#include <string.h>

/* ---- parsing -------------------------------------------------------------------------- */

static bool token68_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/';
}

mhdctx_error mhdctx_bearer_parse(const char *header, size_t header_len, const char **token,
                                 size_t *token_len)
{
    static const char scheme[] = "Bearer";
    const size_t scheme_len = sizeof scheme - 1;
    if (header == NULL || token == NULL || token_len == NULL || header_len <= scheme_len)
        return MHDCTX_EPARSE;
    if (!mhdctx__ascii_case_equal_n(header, scheme, scheme_len) || header[scheme_len] != ' ')
        return MHDCTX_EPARSE;
    size_t i = scheme_len;
    while (i < header_len && header[i] == ' ')
        i++;
    size_t start = i;
    while (i < header_len && token68_char((unsigned char)header[i]))
        i++;
    if (i == start)
        return MHDCTX_EPARSE;
    while (i < header_len && header[i] == '=') /* token68 padding */
        i++;
    size_t end = i;
    /* trailing blanks are not part of a field's value (RFC 9110 section 5.5) */
    while (i < header_len && (header[i] == ' ' || header[i] == '\t'))
        i++;
    if (i != header_len) /* anything else: a second token, a comma, a control byte */
        return MHDCTX_EPARSE;
    *token = header + start;
    *token_len = end - start;
    return MHDCTX_OK;
}

bool mhdctx_secret_equal(const void *given, size_t given_len, const void *secret,
                         size_t secret_len)
{
    const volatile unsigned char *a = given;
    const volatile unsigned char *b = secret;
    given_len = given ? given_len : 0; /* NULL reads as no bytes: equal to nothing */
    secret_len = secret ? secret_len : 0;
    unsigned char diff = (unsigned char)(given_len != secret_len);
    /* Reads every secret byte whatever the input; the given string is read modulo
     * its length so that a short guess is not faster. */
    for (size_t i = 0; i < secret_len; i++) {
        unsigned char x = given_len ? a[i % given_len] : 0;
        diff |= (unsigned char)(x ^ b[i]);
    }
    /* & rather than &&: no branch on the secret-derived difference (check_auth runs
     * this under valgrind with the secret marked undefined to prove it). */
    return (diff == 0) & (given != NULL) & (secret != NULL);
}

/* ---- the hook ------------------------------------------------------------------------- */

struct bearer_auth {
    mhdctx_token_verifier verify;
    void *cls;
};

/* Every 401 says how to authenticate (RFC 6750 section 3). */
static mhdctx_hook_result refuse(struct MHD_Connection *connection)
{
    return mhdctx__respond_error_with(connection, MHD_HTTP_UNAUTHORIZED, "invalid_token",
                                      MHD_HTTP_HEADER_WWW_AUTHENTICATE,
                                      "Bearer error=\"invalid_token\"") == MHD_YES
               ? MHDCTX_HOOK_DONE
               : MHDCTX_HOOK_FAIL;
}

static mhdctx_hook_result bearer_hook(struct MHD_Connection *connection, mhdctx_context *ctx,
                                      void *cls)
{
    struct bearer_auth *auth = cls;
    const char *value;
    size_t len;
    unsigned count =
        mhdctx__header_values(connection, MHD_HTTP_HEADER_AUTHORIZATION, &value, &len);
    if (count == 0)
        return MHDCTX_HOOK_CONTINUE; /* anonymous */
    const char *token;
    size_t token_len;
    if (count > 1 || mhdctx_bearer_parse(value, len, &token, &token_len) != MHDCTX_OK)
        return refuse(connection);
    mhdctx_error rc = auth->verify(token, token_len, ctx, auth->cls);
    if (rc == MHDCTX_EAUTH)
        return refuse(connection);
    if (rc != MHDCTX_OK) {
        mhdctx_log_fields(MHDCTX_LOG_ERROR,
                          MHDCTX_FIELDS(MHDCTX_F_STR("error", mhdctx_strerror(rc))),
                          "token verification failed");
        return mhdctx_respond_error(connection, MHD_HTTP_INTERNAL_SERVER_ERROR,
                                    "internal_error") == MHD_YES
                   ? MHDCTX_HOOK_DONE
                   : MHDCTX_HOOK_FAIL;
    }
    return MHDCTX_HOOK_CONTINUE;
}

mhdctx_error mhdctx_add_bearer_auth(mhdctx_middleware *mw, mhdctx_token_verifier verify,
                                    void *cls)
{
    if (verify == NULL)
        return MHDCTX_EINVAL;
    mhdctx_error rc = mhdctx__check_configurable(mw);
    if (rc != MHDCTX_OK)
        return rc;
    struct bearer_auth *auth = mhdctx__malloc(sizeof *auth);
    if (auth == NULL)
        return MHDCTX_ENOMEM;
    *auth = (struct bearer_auth){verify, cls};
    rc = mhdctx_add_hook(mw, bearer_hook, auth);
    if (rc != MHDCTX_OK) {
        mhdctx__free(auth);
        return rc;
    }
    mw->hooks[mw->n_hooks - 1].owned = true; /* freed with the middleware */
    return MHDCTX_OK;
}

/* ---- token table ---------------------------------------------------------------------- */

struct token_entry {
    char *token;
    size_t token_len;
    char *user_id;
    char **roles;
    size_t n_roles;
};

struct mhdctx_token_table {
    struct token_entry *entries;
    size_t n;
};

mhdctx_token_table *mhdctx_token_table_new(void)
{
    return mhdctx__calloc(1, sizeof(mhdctx_token_table));
}

static void entry_release(struct token_entry *e)
{
    if (e->token) /* wipe the secret before giving the memory back */
        memset(e->token, 0, e->token_len);
    mhdctx__free(e->token);
    mhdctx__free(e->user_id);
    for (size_t i = 0; i < e->n_roles; i++)
        mhdctx__free(e->roles[i]);
    mhdctx__free(e->roles);
}

void mhdctx_token_table_free(mhdctx_token_table *table)
{
    if (table == NULL)
        return;
    for (size_t i = 0; i < table->n; i++)
        entry_release(&table->entries[i]);
    mhdctx__free(table->entries);
    mhdctx__free(table);
}

/* token68 (RFC 7235): what a client can send after "Bearer ". */
static bool valid_token(const char *token)
{
    if (token == NULL || *token == '\0' || strlen(token) > 512)
        return false;
    const char *p = token;
    while (token68_char((unsigned char)*p))
        p++;
    if (p == token)
        return false;
    while (*p == '=')
        p++;
    return *p == '\0';
}

static mhdctx_error entry_fill(struct token_entry *e, const char *token, const char *user_id,
                               const char *const *roles, size_t n_roles)
{
    e->token = mhdctx__strdup(token);
    e->token_len = e->token ? strlen(token) : 0;
    e->user_id = mhdctx__strdup(user_id);
    e->roles = n_roles ? mhdctx__calloc(n_roles, sizeof *e->roles) : NULL;
    if (!e->token || !e->user_id || (n_roles && !e->roles))
        return MHDCTX_ENOMEM;
    for (; e->n_roles < n_roles; e->n_roles++) {
        e->roles[e->n_roles] = mhdctx__strdup(roles[e->n_roles]);
        if (e->roles[e->n_roles] == NULL)
            return MHDCTX_ENOMEM;
    }
    return MHDCTX_OK;
}

/* Whether @token is in @table already (compared like verify: in constant time). */
static bool token_known(const mhdctx_token_table *table, const char *token)
{
    size_t len = strlen(token);
    bool known = false;
    for (size_t i = 0; i < table->n; i++)
        known |= mhdctx_secret_equal(token, len, table->entries[i].token,
                                     table->entries[i].token_len);
    return known;
}

/* Whether the arguments make an entry the context accepts at every request (refused now
 * rather than with a 500 each time). */
static bool entry_args_valid(const char *token, const char *user_id, const char *const *roles,
                             size_t n_roles)
{
    if (!valid_token(token) || (n_roles && roles == NULL) || n_roles > MHDCTX_MAX_ROLES ||
        mhdctx__check_label(user_id, MHDCTX_MAX_USER_ID_LEN) != MHDCTX_OK)
        return false;
    for (size_t i = 0; i < n_roles; i++) {
        if (mhdctx__check_label(roles[i], MHDCTX_MAX_KEY_LEN) != MHDCTX_OK)
            return false;
    }
    return true;
}

/* Appends an entry whose arguments are valid and whose token is not in @table. */
static mhdctx_error append_entry(mhdctx_token_table *table, const char *token,
                                 const char *user_id, const char *const *roles, size_t n_roles)
{
    struct token_entry *grown = mhdctx__realloc(table->entries, (table->n + 1) * sizeof *grown);
    if (grown == NULL)
        return MHDCTX_ENOMEM;
    table->entries = grown;
    struct token_entry *e = &grown[table->n];
    memset(e, 0, sizeof *e);
    mhdctx_error rc = entry_fill(e, token, user_id, roles, n_roles);
    if (rc != MHDCTX_OK) {
        entry_release(e);
        return rc;
    }
    table->n++;
    return MHDCTX_OK;
}

mhdctx_error mhdctx_token_table_add(mhdctx_token_table *table, const char *token,
                                    const char *user_id, const char *const *roles,
                                    size_t n_roles)
{
    if (table == NULL || !entry_args_valid(token, user_id, roles, n_roles))
        return MHDCTX_EINVAL;
    /* A second user for a token would silently take the first one's requests. */
    if (token_known(table, token))
        return MHDCTX_EINVAL;
    return append_entry(table, token, user_id, roles, n_roles);
}

static mhdctx_error load_fail(char *err, size_t err_size, mhdctx_error rc, const char *what,
                              const char *detail)
{
    if (err && err_size)
        snprintf(err, err_size, "%s%s%s", what, detail ? ": " : "", detail ? detail : "");
    return rc;
}

/* Why the file is not JSON, in words of our own: jansson's text quotes the input near
 * the error ("duplicate object key near '\"<token>\"'"), and the input is secrets. */
static const char *parse_failure(enum json_error_code code)
{
    switch (code) {
    case json_error_duplicate_key:
        return "a token appears twice";
    case json_error_invalid_utf8:
        return "invalid UTF-8";
    case json_error_null_character:
    case json_error_null_byte_in_key:
        return "a NUL character";
    case json_error_premature_end_of_input:
        return "the file ends inside a value";
    case json_error_end_of_input_expected:
        return "text after the object";
    case json_error_stack_overflow:
        return "nested too deeply";
    case json_error_numeric_overflow:
        return "a number out of range";
    case json_error_out_of_memory:
        return "out of memory";
    default:
        return "not valid JSON";
    }
}

/* One entry of a loaded file, whose token the caller found not in @table. */
static mhdctx_error load_entry(mhdctx_token_table *table, const char *token, json_t *spec)
{
    const char *roles[MHDCTX_MAX_ROLES];
    json_t *user = json_object_get(spec, "user_id");
    json_t *list = json_object_get(spec, "roles");
    if (!json_is_string(user) || (list && !json_is_array(list)) ||
        json_array_size(list) > MHDCTX_MAX_ROLES)
        return MHDCTX_EPARSE;
    size_t n = json_array_size(list);
    for (size_t i = 0; i < n; i++) {
        roles[i] = json_string_value(json_array_get(list, i));
        if (roles[i] == NULL)
            return MHDCTX_EPARSE;
    }
    if (!entry_args_valid(token, json_string_value(user), roles, n))
        return MHDCTX_EINVAL;
    return append_entry(table, token, json_string_value(user), roles, n);
}

mhdctx_error mhdctx_token_table_load(mhdctx_token_table *table, const char *path, char *err,
                                     size_t err_size)
{
    if (table == NULL || path == NULL)
        return load_fail(err, err_size, MHDCTX_EINVAL, "invalid argument", NULL);
    json_error_t jerr;
    json_t *root = mhdctx__json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL && json_error_code(&jerr) == json_error_cannot_open_file)
        return load_fail(err, err_size, MHDCTX_EIO, path, jerr.text); /* strerror */
    if (root == NULL) {
        char where[160];
        snprintf(where, sizeof where, "line %d, column %d: %s", jerr.line, jerr.column,
                 parse_failure(json_error_code(&jerr)));
        return load_fail(err, err_size, MHDCTX_EPARSE, path, where);
    }
    mhdctx_error rc = json_is_object(root) ? MHDCTX_OK : MHDCTX_EPARSE;
    const char *why = "expected {\"<token>\": {\"user_id\": \"...\", \"roles\": [...]}}";
    size_t before = table->n; /* a failed load adds nothing: a retry must not duplicate */
    const char *token;
    json_t *spec;
    json_object_foreach(root, token, spec)
    {
        if (rc != MHDCTX_OK)
            break;
        if (token_known(table, token)) {
            rc = MHDCTX_EPARSE;
            why = "a token already in the table";
        } else {
            rc = load_entry(table, token, spec);
        }
    }
    json_decref(root);
    while (rc != MHDCTX_OK && table->n > before)
        entry_release(&table->entries[--table->n]);
    if (rc != MHDCTX_OK)
        return load_fail(err, err_size, rc, path, why);
    return MHDCTX_OK;
}

mhdctx_error mhdctx_token_table_verify(const char *token, size_t token_len, mhdctx_context *ctx,
                                       void *cls)
{
    const mhdctx_token_table *table = cls;
    if (table == NULL || ctx == NULL)
        return MHDCTX_EINVAL;
    /* Compare against every entry, no early exit: the time is the same for a hit on
     * the first entry, on the last, or a miss. */
    const struct token_entry *match = NULL;
    for (size_t i = 0; i < table->n; i++) {
        const struct token_entry *e = &table->entries[i];
        bool equal = mhdctx_secret_equal(token, token_len, e->token, e->token_len);
        match = equal ? e : match;
    }
    if (match == NULL)
        return MHDCTX_EAUTH;
    mhdctx_error rc = mhdctx_set_user_id(ctx, match->user_id);
    for (size_t i = 0; rc == MHDCTX_OK && i < match->n_roles; i++)
        rc = mhdctx_add_role(ctx, match->roles[i]);
    return rc;
}
