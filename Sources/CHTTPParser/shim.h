#include <http_parser.h>

/* Swift does not read C bit-fields reliably across compilers: these read the few a request needs. */
static inline unsigned wharf_http_parser_flags(const http_parser *p) { return p->flags; }
static inline unsigned wharf_http_parser_method(const http_parser *p) { return p->method; }
static inline unsigned wharf_http_parser_errno(const http_parser *p) { return p->http_errno; }
static inline unsigned wharf_http_parser_upgrade(const http_parser *p) { return p->upgrade; }
