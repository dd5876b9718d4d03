/*
 * floor-native: the serving benchmark's lowest floor. A single-threaded epoll
 * server in C that answers perf_analyzer's add_sub / add_sub_batched requests
 * (KServe v2 over HTTP/1.1, keep-alive, Content-Length bodies) and nothing
 * else. It is NOT a competitor and NOT a server to use: it checks almost
 * nothing. Its figures are what any server, in any language, can reach under
 * this perf_analyzer on this machine: the client's own work and loopback TCP
 * on the same cores, with the server's share cut to a few syscalls.
 *
 *   cc -O2 -o bench/.work/floor-native bench/serving/floor-native.c
 *   bench/.work/floor-native [port]      (default 8232; binds 127.0.0.1)
 *
 * Each inference request is decoded and computed (OUTPUT0 = INPUT0 + INPUT1,
 * OUTPUT1 = INPUT0 - INPUT1, FP32), JSON or binary tensors, as floor-server.mjs
 * does the first time it sees a body; there is no response cache.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXN 64 /* elements per input tensor this floor accepts */

struct conn {
  int fd;
  char *buf;
  size_t len, cap;
};

struct model {
  const char *name;
  int max_batch;
  unsigned long count;
  unsigned long long last_ms;
};
static struct model MODELS[] = {{"add_sub", 0, 0, 0}, {"add_sub_batched", 8, 0, 0}};

/* The response being built: one buffer, written with one send(). */
static char out[1 << 16];
static size_t outlen;

static void put(const char *s, size_t n) {
  if (n > sizeof out - outlen) n = sizeof out - outlen;
  memcpy(out + outlen, s, n);
  outlen += n;
}
__attribute__((format(printf, 1, 2)))
static void putf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(out + outlen, sizeof out - outlen, fmt, ap);
  va_end(ap);
  if (n > 0) outlen += (size_t)n < sizeof out - outlen ? (size_t)n : sizeof out - outlen - 1;
}

static unsigned long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (unsigned long long)ts.tv_sec * 1000ull + (unsigned long long)ts.tv_nsec / 1000000ull;
}

/* Starts a response: status line and headers; the body follows with put(). */
static void respond(int status, const char *type, const char *extra, const char *body, size_t n) {
  const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : "Bad Request";
  outlen = 0;
  putf("HTTP/1.1 %d %s\r\ncontent-type: %s\r\n%scontent-length: %zu\r\n\r\n", status, reason, type, extra ? extra : "", n);
  put(body, n);
}

static void error_(int status, const char *msg) {
  char b[512];
  int n = snprintf(b, sizeof b, "{\"error\":\"floor-native: %s\"}", msg);
  respond(status, "application/json", NULL, b, (size_t)n);
}

/* Finds a JSON key's value in [s, e): the byte after `"key":`, or NULL. */
static const char *after_key(const char *s, const char *e, const char *key) {
  size_t k = strlen(key);
  for (const char *p = s; p + k + 3 <= e; p++) {
    if (*p == '"' && memcmp(p + 1, key, k) == 0 && p[k + 1] == '"') {
      const char *q = p + k + 2;
      while (q < e && (*q == ' ' || *q == ':')) q++;
      return q;
    }
  }
  return NULL;
}

/* Reads up to MAXN numbers of a (possibly nested) JSON array at p. */
static int read_array(const char *p, const char *e, float *v) {
  int n = 0, depth = 0;
  for (; p < e; p++) {
    if (*p == '[') depth++;
    else if (*p == ']') {
      if (--depth == 0) return n;
    } else if ((*p >= '0' && *p <= '9') || *p == '-' || *p == '.') {
      char *end;
      float f = strtof(p, &end);
      if (n < MAXN) v[n++] = f;
      p = end - 1;
    }
  }
  return -1;
}

struct input {
  float v[MAXN];
  int n;
  char shape[64];
};

/* Decodes one inference request and writes add_sub's response. */
static void infer(struct model *m, const char *body, size_t len, long header_len) {
  const char *e = body + (header_len >= 0 ? (size_t)header_len : len);
  const char *bin = e; /* binary tensors follow the JSON header */
  struct input in[2];
  const char *names[2] = {"INPUT0", "INPUT1"};
  for (int i = 0; i < 2; i++) {
    char key[32];
    snprintf(key, sizeof key, "\"%s\"", names[i]);
    const char *t = strstr(body, key);
    if (!t || t >= e) return error_(400, "missing input");
    const char *sh = after_key(t, e, "shape");
    const char *she = sh ? memchr(sh, ']', (size_t)(e - sh)) : NULL;
    if (!she || (size_t)(she - sh + 1) >= sizeof in[i].shape) return error_(400, "bad shape");
    memcpy(in[i].shape, sh, (size_t)(she - sh + 1));
    in[i].shape[she - sh + 1] = 0;
    const char *size = after_key(t, e, "binary_data_size");
    const char *data = after_key(t, e, "data");
    if (size && (!data || size < data)) {
      long n = strtol(size, NULL, 10);
      if (n < 0 || n > MAXN * 4 || bin + n > body + len) return error_(400, "bad binary_data_size");
      memcpy(in[i].v, bin, (size_t)n);
      bin += n;
      in[i].n = (int)(n / 4);
    } else if (data) {
      in[i].n = read_array(data, e, in[i].v);
      if (in[i].n < 0) return error_(400, "bad data");
    } else {
      return error_(400, "no data");
    }
  }
  if (in[0].n != in[1].n) return error_(400, "inputs differ in size");
  int n = in[0].n, binary = strstr(body, "\"binary_data\":true") && strstr(body, "\"binary_data\":true") < e;
  float r[2][MAXN];
  for (int j = 0; j < n; j++) {
    r[0][j] = in[0].v[j] + in[1].v[j];
    r[1][j] = in[0].v[j] - in[1].v[j];
  }
  char head[4096];
  int h = snprintf(head, sizeof head, "{\"model_name\":\"%s\",\"model_version\":\"1\",\"outputs\":[", m->name);
  for (int o = 0; o < 2; o++) {
    h += snprintf(head + h, sizeof head - (size_t)h, "%s{\"name\":\"OUTPUT%d\",\"datatype\":\"FP32\",\"shape\":%s,", o ? "," : "", o, in[0].shape);
    if (binary) {
      h += snprintf(head + h, sizeof head - (size_t)h, "\"parameters\":{\"binary_data_size\":%d}}", n * 4);
    } else {
      h += snprintf(head + h, sizeof head - (size_t)h, "\"data\":[");
      for (int j = 0; j < n; j++) h += snprintf(head + h, sizeof head - (size_t)h, "%s%.9g", j ? "," : "", (double)r[o][j]);
      h += snprintf(head + h, sizeof head - (size_t)h, "]}");
    }
  }
  h += snprintf(head + h, sizeof head - (size_t)h, "]}");
  m->count++;
  m->last_ms = now_ms();
  if (!binary) return respond(200, "application/json", NULL, head, (size_t)h);
  outlen = 0;
  putf("HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ninference-header-content-length: %d\r\n"
       "content-length: %d\r\n\r\n",
       h, h + 2 * n * 4);
  put(head, (size_t)h);
  put((const char *)r[0], (size_t)n * 4);
  put((const char *)r[1], (size_t)n * 4);
}

static void stats(struct model *m) {
  char b[2048];
  unsigned long c = m->count;
  int n = snprintf(b, sizeof b,
                   "{\"model_stats\":[{\"name\":\"%s\",\"version\":\"1\",\"last_inference\":%llu,\"inference_count\":%lu,"
                   "\"execution_count\":%lu,\"inference_stats\":{\"success\":{\"count\":%lu,\"ns\":0},\"fail\":{\"count\":0,\"ns\":0},"
                   "\"queue\":{\"count\":%lu,\"ns\":0},\"compute_input\":{\"count\":%lu,\"ns\":0},\"compute_infer\":{\"count\":%lu,\"ns\":0},"
                   "\"compute_output\":{\"count\":%lu,\"ns\":0},\"cache_hit\":{\"count\":0,\"ns\":0},\"cache_miss\":{\"count\":0,\"ns\":0}},"
                   "\"response_stats\":{},\"batch_stats\":[],\"memory_usage\":[]}]}",
                   m->name, m->last_ms, c, c, c, c, c, c, c);
  respond(200, "application/json", NULL, b, (size_t)n);
}

static void metadata(struct model *m, int config) {
  char b[2048];
  const char *shape = m->max_batch ? "[-1,4]" : "[4]";
  int n;
  if (config) {
    n = snprintf(b, sizeof b,
                 "{\"name\":\"%s\",\"platform\":\"\",\"backend\":\"floor\",\"version_policy\":{\"latest\":{\"num_versions\":1}},"
                 "\"max_batch_size\":%d,\"input\":[{\"name\":\"INPUT0\",\"data_type\":\"TYPE_FP32\",\"dims\":[4]},"
                 "{\"name\":\"INPUT1\",\"data_type\":\"TYPE_FP32\",\"dims\":[4]}],\"output\":[{\"name\":\"OUTPUT0\",\"data_type\":"
                 "\"TYPE_FP32\",\"dims\":[4]},{\"name\":\"OUTPUT1\",\"data_type\":\"TYPE_FP32\",\"dims\":[4]}],"
                 "\"instance_group\":[{\"name\":\"%s_0\",\"kind\":\"KIND_CPU\",\"count\":1}]}",
                 m->name, m->max_batch, m->name);
  } else {
    n = snprintf(b, sizeof b,
                 "{\"name\":\"%s\",\"versions\":[\"1\"],\"platform\":\"floor\",\"inputs\":[{\"name\":\"INPUT0\",\"datatype\":\"FP32\","
                 "\"shape\":%s},{\"name\":\"INPUT1\",\"datatype\":\"FP32\",\"shape\":%s}],\"outputs\":[{\"name\":\"OUTPUT0\","
                 "\"datatype\":\"FP32\",\"shape\":%s},{\"name\":\"OUTPUT1\",\"datatype\":\"FP32\",\"shape\":%s}]}",
                 m->name, shape, shape, shape, shape);
  }
  respond(200, "application/json", NULL, b, (size_t)n);
}

/* Routes one request; the response is left in `out`. */
static void handle(const char *url, size_t ulen, const char *body, size_t blen, long header_len) {
  static const char server[] = "{\"name\":\"floor-native\",\"version\":\"0\",\"extensions\":[\"binary_tensor_data\",\"statistics\"]}";
  if (ulen == 3 && memcmp(url, "/v2", 3) == 0) return respond(200, "application/json", NULL, server, sizeof server - 1);
  if (ulen >= 11 && memcmp(url, "/v2/health/", 11) == 0) return respond(200, "application/json", NULL, "", 0);
  if (ulen < 11 || memcmp(url, "/v2/models/", 11) != 0) return error_(404, "unknown endpoint");
  const char *p = url + 11, *e = url + ulen;
  const char *slash = memchr(p, '/', (size_t)(e - p));
  size_t nlen = (size_t)((slash ? slash : e) - p);
  struct model *m = NULL;
  for (size_t i = 0; i < sizeof MODELS / sizeof *MODELS; i++) {
    if (strlen(MODELS[i].name) == nlen && memcmp(MODELS[i].name, p, nlen) == 0) m = &MODELS[i];
  }
  if (!m) return error_(404, "unknown model");
  p += nlen;
  if (e - p >= 11 && memcmp(p, "/versions/1", 11) == 0) p += 11;
  size_t rest = (size_t)(e - p);
#define IS(s) (rest == sizeof(s) - 1 && memcmp(p, s, rest) == 0)
  if (rest == 0) return metadata(m, 0);
  if (IS("/config")) return metadata(m, 1);
  if (IS("/stats")) return stats(m);
  if (IS("/ready")) return respond(200, "application/json", NULL, "", 0);
  if (IS("/infer")) return infer(m, body, blen, header_len);
#undef IS
  error_(404, "unknown endpoint");
}

/* A header's value in [s, e), or NULL. */
static const char *header(const char *s, const char *e, const char *name) {
  size_t k = strlen(name);
  for (const char *p = s; p && p + k + 1 < e; p = memchr(p, '\n', (size_t)(e - p)), p = p ? p + 1 : NULL) {
    if (strncasecmp(p, name, k) == 0 && p[k] == ':') return p + k + 1;
  }
  return NULL;
}

/* Serves every whole request in the connection's buffer; 0 to keep it, -1 to close. */
static int serve(struct conn *c) {
  size_t off = 0;
  for (;;) {
    char *s = c->buf + off, *e = c->buf + c->len;
    char *end = memmem(s, (size_t)(e - s), "\r\n\r\n", 4);
    if (!end) break;
    const char *cl = header(s, end + 2, "content-length");
    long blen = cl ? strtol(cl, NULL, 10) : 0;
    if (blen < 0) return -1;
    if ((size_t)(e - end - 4) < (size_t)blen) break;
    const char *ihl = header(s, end + 2, "inference-header-content-length");
    long hlen = ihl ? strtol(ihl, NULL, 10) : -1;
    if (hlen > blen) return -1;
    char *sp = memchr(s, ' ', (size_t)(end - s));
    char *url = sp ? sp + 1 : NULL;
    char *sp2 = url ? memchr(url, ' ', (size_t)(end - url)) : NULL;
    if (!sp2) return -1;
    char *body = end + 4;
    char saved = body[blen];
    body[blen] = 0; /* strstr stays inside the body (the buffer has room for it) */
    handle(url, (size_t)(sp2 - url), body, (size_t)blen, hlen);
    body[blen] = saved;
    for (size_t w = 0; w < outlen;) {
      ssize_t n = send(c->fd, out + w, outlen - w, MSG_NOSIGNAL);
      if (n < 0 && errno == EAGAIN) continue; /* a floor: spin rather than buffer */
      if (n < 0) return -1;
      w += (size_t)n;
    }
    off = (size_t)(body + blen - c->buf);
  }
  memmove(c->buf, c->buf + off, c->len - off);
  c->len -= off;
  return 0;
}

int main(int argc, char **argv) {
  int port = argc > 1 ? atoi(argv[1]) : 8232;
  signal(SIGPIPE, SIG_IGN);
  int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0 || listen(ls, 128) < 0) {
    perror("floor-native: bind/listen");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
  epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
  fprintf(stderr, "floor-native: listening on http://127.0.0.1:%d\n", port);
  struct epoll_event evs[64];
  for (;;) {
    int k = epoll_wait(ep, evs, 64, -1);
    for (int i = 0; i < k; i++) {
      struct conn *c = evs[i].data.ptr;
      if (!c) {
        int fd;
        while ((fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          c = calloc(1, sizeof *c);
          c->fd = fd;
          c->cap = 1 << 16;
          c->buf = malloc(c->cap + 1);
          struct epoll_event ce = {.events = EPOLLIN, .data.ptr = c};
          epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ce);
        }
        continue;
      }
      for (;;) {
        if (c->len == c->cap) {
          c->cap *= 2;
          c->buf = realloc(c->buf, c->cap + 1);
        }
        size_t room = c->cap - c->len;
        ssize_t n = recv(c->fd, c->buf + c->len, room, 0);
        if (n > 0) {
          c->len += (size_t)n;
          if ((size_t)n < room) break; /* drained */
          continue;
        }
        if (n < 0 && errno == EAGAIN) break;
        close(c->fd); /* closing removes it from the epoll set */
        free(c->buf);
        free(c);
        c = NULL;
        break;
      }
      if (c && serve(c) < 0) {
        close(c->fd);
        free(c->buf);
        free(c);
      }
    }
  }
}
