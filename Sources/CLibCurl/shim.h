#include <curl/curl.h>

// curl_easy_setopt, curl_multi_setopt and curl_easy_getinfo are variadic, which Swift cannot call:
// one typed wrapper per argument type used.
static inline CURLcode wharf_curl_setopt_long(CURL *e, CURLoption o, long v) { return curl_easy_setopt(e, o, v); }
static inline CURLcode wharf_curl_setopt_ptr(CURL *e, CURLoption o, const void *v) { return curl_easy_setopt(e, o, v); }
static inline CURLcode wharf_curl_setopt_write(CURL *e, CURLoption o, size_t (*f)(char *, size_t, size_t, void *)) {
    return curl_easy_setopt(e, o, f);
}
static inline CURLMcode wharf_curl_multi_setopt_ptr(CURLM *m, CURLMoption o, void *v) {
    return curl_multi_setopt(m, o, v);
}
static inline CURLMcode wharf_curl_multi_setopt_long(CURLM *m, CURLMoption o, long v) {
    return curl_multi_setopt(m, o, v);
}
static inline CURLMcode wharf_curl_multi_setopt_socketfn(CURLM *m, curl_socket_callback f) {
    return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, f);
}
static inline CURLMcode wharf_curl_multi_setopt_timerfn(CURLM *m, curl_multi_timer_callback f) {
    return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, f);
}
static inline CURLcode wharf_curl_getinfo_long(CURL *e, CURLINFO i, long *v) { return curl_easy_getinfo(e, i, v); }
static inline CURLcode wharf_curl_getinfo_ptr(CURL *e, CURLINFO i, void **v) { return curl_easy_getinfo(e, i, v); }
static inline CURLcode wharf_curl_getinfo_double(CURL *e, CURLINFO i, double *v) { return curl_easy_getinfo(e, i, v); }
