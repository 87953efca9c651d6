/*
 * streamgate load generator: raw MQTT 3.1.1 over TCP, one epoll thread, so that the broker under
 * test is the limit and not the generator (it prints its own CPU share; a run where it used more
 * than half a core is client-bound).
 *
 * Modes
 *   saturate  every connection keeps --window QoS 1 publishes unacknowledged, sending the next on
 *             each PUBACK; reports PUBACKs/s over --seconds after --warmup seconds.
 *   rate      --rate publishes/s in all, spread over the connections (at most --window in flight
 *             each); reports PUBACK latency percentiles over --seconds after --warmup seconds.
 *   connect   opens every connection (--concurrency CONNECTs outstanding at most) and reports
 *             connects/s from the first SYN to the last CONNACK; with --hold it then keeps them
 *             open until stdin closes or SIGTERM (the caller measures the broker's memory).
 *
 * Devices (--device, with connect --hold): each connection subscribes to its cloud-to-device topic
 * (QoS 1) and to direct methods, acknowledges every cloud-to-device message (which completes it),
 * answers every method with status 200, and prints one line per event on stdout:
 * "c2d <clientId> <unix us>" and "method <clientId> <unix us>", plus "status <ready> <reconnects>
 * <unix us>" four times a second. With --reconnect a connection that is closed or refused opens
 * again after 0.5-2.5 s, to the next of --ports; --source-net B binds connection i to the loopback
 * address 127.B.(i/250).(i%250+1), so that no source address runs out of ports.
 *
 * Connections come from --creds FILE, one per line: clientId TAB username TAB password TAB topic
 * (username and password may be empty). Payloads are --payload bytes; the first 20 bytes carry
 * the send time ("t=<unix microseconds>;") so a stream consumer can measure publish-to-readable.
 *
 * Output: progress on stderr, one JSON object on stdout at the end; with --hold also the line
 * "held <n>" once every connection is up.
 *
 * Build: cc -O2 -o loadgen loadgen.c (bench/lib/loadgen.ts does this on first use).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum mode { SATURATE, RATE, CONNECT };
enum state { IDLE, CONNECTING, WAIT_CONNACK, SUBSCRIBING, READY, CLOSED };

#define LEFTOVER_MAX 1024
#define MAX_PORTS 64
#define HIST_BUCKETS 1100

struct conn {
  int fd;
  enum state state;
  char *client_id, *username, *password, *topic;
  uint8_t *publish;      /* a whole PUBLISH packet, packet id and time patched per send */
  size_t publish_len;
  size_t id_at, time_at; /* offsets of the packet id and of the time digits in `publish` */
  uint8_t *out;
  size_t out_len, out_cap, out_sent;
  uint8_t left[LEFTOVER_MAX];
  size_t left_len;
  size_t skip;           /* bytes of an oversized incoming packet still to drop */
  int in_flight;
  uint16_t next_id;
  uint64_t *sent_at;     /* send time (ns) per packet id slot; 0 = free */
  int id_space;
  int want_out;          /* EPOLLOUT armed */
  int dirty;             /* has unsent bytes queued this turn */
  int port_idx;          /* which of opt.ports it uses now */
  uint64_t retry_at;     /* --reconnect: when to open again (ns); 0 = not waiting */
};

static struct {
  enum mode mode;
  const char *host;
  int port;
  const char *creds;
  int conns_max;
  int window;
  int payload;
  double seconds, warmup;
  double rate;
  int concurrency;
  int hold;
  int keepalive;
  int device, reconnect, source_net;
  double connect_timeout;
  int ports[MAX_PORTS];
  int nports, port_offset;
} opt = { SATURATE, "127.0.0.1", 1883, NULL, 0, 10, 200, 10, 2, 5000, 200, 0, 0, 0, 0, -1, 120, { 0 }, 0, 0 };

static struct conn *conns;
static int nconns;
static int ep;
static volatile sig_atomic_t stop_requested;

/* Counters. `window_*` count only inside the measured window. */
static uint64_t sent_total, acked_total, window_acked, refused, failed, connected, connack_at_last;
static uint64_t hist[HIST_BUCKETS];
/* --device: connections subscribed now, reconnects, events seen; retries waiting. */
static uint64_t ready_now, reconnects, c2d_seen, methods_answered;
static int retries_waiting, shutting_down;
static uint64_t lat_max, lat_count;
static int measuring;
static int dirty_list_len;
static int *dirty_list;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t wall_at_start_us, mono_at_start_ns;

static uint64_t wall_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000ull + (uint64_t)ts.tv_nsec / 1000;
}

static double cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
  fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
  exit(2);
}

/* Log-linear histogram of microseconds: 32 sub-buckets per power of two (about 3 % wide). */
static int bucket_of(uint64_t us) {
  if (us < 32) return (int)us;
  int msb = 63 - __builtin_clzll(us);
  int shift = msb - 5;
  int idx = 32 * (shift + 1) + (int)((us >> shift) - 32);
  return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

static double bucket_value(int idx) {
  if (idx < 32) return idx;
  int shift = idx / 32 - 1;
  int sub = idx % 32 + 32;
  return ((double)((uint64_t)sub << shift) + (double)(1ull << shift) / 2.0);
}

static double percentile(double p) {
  if (lat_count == 0) return 0;
  uint64_t rank = (uint64_t)(p * (double)lat_count);
  if (rank >= lat_count) rank = lat_count - 1;
  uint64_t seen = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) {
    seen += hist[i];
    if (seen > rank) return bucket_value(i) / 1000.0;
  }
  return lat_max / 1000.0;
}

static void record_latency(uint64_t ns) {
  uint64_t us = ns / 1000;
  hist[bucket_of(us)]++;
  lat_count++;
  if (us > lat_max) lat_max = us;
}

/* ---- output buffers ---- */

static void queue_bytes(struct conn *c, const uint8_t *data, size_t len) {
  if (c->out_len + len > c->out_cap) {
    size_t cap = c->out_cap ? c->out_cap : 4096;
    while (cap < c->out_len + len) cap *= 2;
    c->out = realloc(c->out, cap);
    if (!c->out) die("realloc");
    c->out_cap = cap;
  }
  memcpy(c->out + c->out_len, data, len);
  c->out_len += len;
  if (!c->dirty) {
    c->dirty = 1;
    dirty_list[dirty_list_len++] = (int)(c - conns);
  }
}

static void close_conn(struct conn *c, int is_failure) {
  if (c->state == CLOSED) return;
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  if (is_failure) failed++;
  if (opt.device && c->state == READY) ready_now--;
  c->state = CLOSED;
  if (opt.reconnect && !shutting_down) {
    c->retry_at = now_ns() + 500000000ull + (uint64_t)(rand() % 2000) * 1000000ull;
    c->port_idx = (c->port_idx + 1) % opt.nports;
    c->in_flight = 0;
    c->left_len = c->skip = 0;
    c->out_len = c->out_sent = 0;
    memset(c->sent_at, 0, (size_t)c->id_space * sizeof *c->sent_at);
    retries_waiting++;
  }
}

static void arm(struct conn *c, int want_out) {
  struct epoll_event ev = { .events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.u32 = (uint32_t)(c - conns) };
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
  c->want_out = want_out;
}

static void flush_conn(struct conn *c) {
  c->dirty = 0;
  if (c->state == CLOSED) return;
  while (c->out_sent < c->out_len) {
    ssize_t n = send(c->fd, c->out + c->out_sent, c->out_len - c->out_sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        if (!c->want_out) arm(c, 1);
        return;
      }
      close_conn(c, 1);
      return;
    }
    c->out_sent += (size_t)n;
  }
  c->out_len = c->out_sent = 0;
  if (c->want_out) arm(c, 0);
}

static void flush_dirty(void) {
  for (int i = 0; i < dirty_list_len; i++) flush_conn(&conns[dirty_list[i]]);
  dirty_list_len = 0;
}

/* ---- MQTT encoding ---- */

static size_t put_varint(uint8_t *p, size_t v) {
  size_t n = 0;
  do {
    uint8_t b = v % 128;
    v /= 128;
    if (v) b |= 0x80;
    p[n++] = b;
  } while (v);
  return n;
}

static size_t put_str(uint8_t *p, const char *s) {
  size_t len = strlen(s);
  p[0] = (uint8_t)(len >> 8);
  p[1] = (uint8_t)len;
  memcpy(p + 2, s, len);
  return len + 2;
}

/* A packet of `type` (first byte) around `body`: fixed header, remaining length, then the body. */
static void queue_packet(struct conn *c, uint8_t type, const uint8_t *body, size_t n) {
  uint8_t packet[4100];
  size_t h = 0;
  packet[h++] = type;
  h += put_varint(packet + h, n);
  memcpy(packet + h, body, n);
  queue_bytes(c, packet, h + n);
}

static void send_connect(struct conn *c) {
  uint8_t body[4096];
  size_t n = 0;
  n += put_str(body + n, "MQTT");
  body[n++] = 4;
  uint8_t flags = 0x02; /* clean session */
  if (c->username[0]) flags |= 0x80;
  if (c->password[0]) flags |= 0x40;
  body[n++] = flags;
  body[n++] = (uint8_t)(opt.keepalive >> 8);
  body[n++] = (uint8_t)opt.keepalive;
  if (strlen(c->client_id) + strlen(c->username) + strlen(c->password) + 32 > sizeof body) {
    fprintf(stderr, "loadgen: credentials too long for %s\n", c->client_id);
    exit(2);
  }
  n += put_str(body + n, c->client_id);
  if (c->username[0]) n += put_str(body + n, c->username);
  if (c->password[0]) n += put_str(body + n, c->password);
  queue_packet(c, 0x10, body, n);
  c->state = WAIT_CONNACK;
}

static void build_publish(struct conn *c) {
  size_t topic_len = strlen(c->topic);
  size_t remaining = 2 + topic_len + 2 + (size_t)opt.payload;
  c->publish = malloc(remaining + 8);
  if (!c->publish) die("malloc");
  size_t n = 0;
  c->publish[n++] = 0x32; /* PUBLISH, QoS 1 */
  n += put_varint(c->publish + n, remaining);
  n += put_str(c->publish + n, c->topic);
  c->id_at = n;
  n += 2;
  c->time_at = n;
  memset(c->publish + n, 'x', (size_t)opt.payload);
  c->publish_len = n + (size_t)opt.payload;
}

/* Queue one PUBLISH on `c`; returns 0 when its window is full. */
static int publish_one(struct conn *c, uint64_t t) {
  if (c->state != READY || c->in_flight >= opt.window) return 0;
  for (int tries = 0; tries < c->id_space; tries++) {
    uint16_t id = c->next_id;
    c->next_id = (uint16_t)(c->next_id % c->id_space + 1);
    if (c->sent_at[id - 1]) continue; /* still unacknowledged */
    c->sent_at[id - 1] = t;
    c->publish[c->id_at] = (uint8_t)(id >> 8);
    c->publish[c->id_at + 1] = (uint8_t)id;
    if (opt.payload >= 20) {
      /* "t=" 16 digits ";": wall-clock microseconds, derived from the monotonic `t` (no syscall). */
      uint8_t *d = c->publish + c->time_at;
      uint64_t us = wall_at_start_us + (t - mono_at_start_ns) / 1000;
      d[0] = 't';
      d[1] = '=';
      for (int i = 17; i >= 2; i--) {
        d[i] = (uint8_t)('0' + us % 10);
        us /= 10;
      }
      d[18] = ';';
    }
    queue_bytes(c, c->publish, c->publish_len);
    c->in_flight++;
    sent_total++;
    return 1;
  }
  return 0;
}

static void fill_window(struct conn *c, uint64_t t) {
  while (publish_one(c, t)) {
  }
}

/* ---- incoming packets ---- */

/* --device: SUBSCRIBE to the device's cloud-to-device topic (QoS 1) and to direct methods (QoS 0). */
static void send_subscribe(struct conn *c) {
  uint8_t body[1024];
  char c2d[600];
  if (strlen(c->client_id) > 500) {
    fprintf(stderr, "loadgen: client id too long for --device: %s\n", c->client_id);
    exit(2);
  }
  snprintf(c2d, sizeof c2d, "devices/%s/messages/devicebound/#", c->client_id);
  size_t n = 0;
  body[n++] = 0;
  body[n++] = 1; /* packet id 1 */
  n += put_str(body + n, c2d);
  body[n++] = 1;
  n += put_str(body + n, "$iothub/methods/POST/#");
  body[n++] = 0;
  queue_packet(c, 0x82, body, n);
  c->state = SUBSCRIBING;
}

/* --device: a cloud-to-device message gets its PUBACK, a method request its answer (status 200). */
static void on_publish(struct conn *c, uint8_t flags, const uint8_t *body, size_t len) {
  if (len < 2) return;
  size_t topic_len = (size_t)body[0] << 8 | body[1];
  if (2 + topic_len > len) return;
  const char *topic = (const char *)body + 2;
  int qos = (flags >> 1) & 3;
  if (qos > 0 && 2 + topic_len + 2 <= len) {
    uint8_t ack[4] = { 0x40, 0x02, body[2 + topic_len], body[3 + topic_len] };
    queue_bytes(c, ack, 4);
  }
  static const char method_prefix[] = "$iothub/methods/POST/";
  if (topic_len > sizeof method_prefix - 1 && !memcmp(topic, method_prefix, sizeof method_prefix - 1)) {
    const char *rid = NULL;
    for (size_t i = 0; i + 5 <= topic_len; i++)
      if (!memcmp(topic + i, "$rid=", 5)) { rid = topic + i + 5; break; }
    if (!rid) return;
    size_t rid_len = (size_t)(topic + topic_len - rid);
    for (size_t i = 0; i < rid_len; i++)
      if (rid[i] == '&') { rid_len = i; break; }
    if (rid_len > 200) return;
    char res[256];
    int res_len = snprintf(res, sizeof res, "$iothub/methods/res/200/?$rid=%.*s", (int)rid_len, rid);
    static const char answer[] = "{\"ok\":true}";
    uint8_t packet[300];
    size_t n = 0, remaining = 2 + (size_t)res_len + sizeof answer - 1;
    packet[n++] = 0x30;
    n += put_varint(packet + n, remaining);
    packet[n++] = (uint8_t)(res_len >> 8);
    packet[n++] = (uint8_t)res_len;
    memcpy(packet + n, res, (size_t)res_len);
    n += (size_t)res_len;
    memcpy(packet + n, answer, sizeof answer - 1);
    n += sizeof answer - 1;
    queue_bytes(c, packet, n);
    methods_answered++;
    printf("method %s %llu\n", c->client_id, (unsigned long long)wall_us());
  } else if (qos > 0) {
    c2d_seen++;
    printf("c2d %s %llu\n", c->client_id, (unsigned long long)wall_us());
  }
}

static void on_packet(struct conn *c, uint8_t type, uint8_t flags, const uint8_t *body, size_t len, uint64_t t) {
  if (type == 0x20 && len >= 2) { /* CONNACK */
    if (body[1] != 0) {
      refused++;
      close_conn(c, 0);
      return;
    }
    connected++;
    connack_at_last = t;
    if (opt.device) {
      send_subscribe(c);
      return;
    }
    c->state = READY;
    if (opt.mode == SATURATE && measuring >= 0) fill_window(c, t);
  } else if (type == 0x90 && c->state == SUBSCRIBING) { /* SUBACK */
    c->state = READY;
    ready_now++;
  } else if (type == 0x30 && opt.device) {
    on_publish(c, flags, body, len);
  } else if (type == 0x40 && len >= 2) { /* PUBACK */
    uint16_t id = (uint16_t)(body[0] << 8 | body[1]);
    if (id == 0 || id > c->id_space || !c->sent_at[id - 1]) return;
    uint64_t sent = c->sent_at[id - 1];
    c->sent_at[id - 1] = 0;
    c->in_flight--;
    acked_total++;
    if (measuring == 1) {
      window_acked++;
      record_latency(t - sent);
    }
    if (opt.mode == SATURATE && measuring >= 0) publish_one(c, t);
  }
  /* Anything else (PINGRESP; a PUBLISH the broker sends, unless --device) is ignored. */
}

static void on_readable(struct conn *c, uint64_t t) {
  static uint8_t buf[65536 + LEFTOVER_MAX];
  for (;;) {
    size_t have = c->left_len;
    memcpy(buf, c->left, have);
    ssize_t n = recv(c->fd, buf + have, 65536, 0);
    if (n == 0) {
      close_conn(c, 1);
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      close_conn(c, 1);
      return;
    }
    size_t end = have + (size_t)n, at = 0;
    if (c->skip) {
      size_t drop = c->skip < end ? c->skip : end;
      c->skip -= drop;
      at = drop;
    }
    while (at < end) {
      /* Fixed header: type byte and up to 4 bytes of remaining length. */
      size_t p = at + 1, len = 0;
      int mul = 1, complete = 0;
      while (p < end && p < at + 5) {
        uint8_t b = buf[p++];
        len += (size_t)(b & 0x7f) * (size_t)mul;
        mul *= 128;
        if (!(b & 0x80)) {
          complete = 1;
          break;
        }
      }
      if (!complete) break;
      if (len > LEFTOVER_MAX - 8) { /* not a packet this tool expects: drop it */
        size_t avail = end - p;
        if (avail >= len) {
          at = p + len;
          continue;
        }
        c->skip = len - avail;
        at = end;
        break;
      }
      if (end - p < len) break;
      on_packet(c, buf[at] & 0xf0, buf[at] & 0x0f, buf + p, len, t);
      if (c->state == CLOSED) return;
      at = p + len;
    }
    c->left_len = end - at;
    memcpy(c->left, buf + at, c->left_len);
    if ((size_t)n < 65536) return;
  }
}

/* ---- connections ---- */

static int in_progress;
static int next_to_open;

static void open_conn(struct conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (c->fd < 0) die("socket (raise the open-file limit?)");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  int port = opt.nports ? opt.ports[c->port_idx] : opt.port;
  struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
  if (inet_pton(AF_INET, opt.host, &addr.sin_addr) != 1) {
    fprintf(stderr, "loadgen: --host must be an IPv4 address\n");
    exit(2);
  }
  if (opt.source_net >= 0) {
    int i = (int)(c - conns);
    struct sockaddr_in local = { .sin_family = AF_INET, .sin_port = 0 };
    local.sin_addr.s_addr = htonl((127u << 24) | ((uint32_t)opt.source_net << 16) | ((uint32_t)(i / 250 % 250) << 8) | (uint32_t)(i % 250 + 1));
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(c->fd, (struct sockaddr *)&local, sizeof local) < 0) die("bind (--source-net)");
  }
  struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT, .data.u32 = (uint32_t)(c - conns) };
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0) die("epoll_ctl");
  c->want_out = 1;
  c->state = CONNECTING;
  in_progress++;
  if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS) {
    in_progress--;
    close_conn(c, 1);
  }
}

static void open_more(void) {
  while (next_to_open < nconns && in_progress < opt.concurrency) open_conn(&conns[next_to_open++]);
  if (!retries_waiting || in_progress >= opt.concurrency) return;
  uint64_t t = now_ns();
  for (int i = 0; i < next_to_open && in_progress < opt.concurrency; i++) {
    struct conn *c = &conns[i];
    if (!c->retry_at || c->retry_at > t) continue;
    c->retry_at = 0;
    retries_waiting--;
    reconnects++;
    open_conn(c);
  }
}

static void on_event(struct conn *c, uint32_t events, uint64_t t) {
  if (c->state == CLOSED) return;
  if (c->state == CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err || (events & (EPOLLERR | EPOLLHUP))) {
      in_progress--;
      close_conn(c, 1);
      return;
    }
    if (!(events & EPOLLOUT)) return;
    send_connect(c);
    flush_conn(c);
    if (c->state == CLOSED) in_progress--;
    else if (!c->want_out) arm(c, 0);
    return;
  }
  if (events & EPOLLIN) {
    enum state before = c->state;
    on_readable(c, t);
    if (before == WAIT_CONNACK && c->state != WAIT_CONNACK) in_progress--;
  } else if (events & (EPOLLERR | EPOLLHUP)) {
    if (c->state == WAIT_CONNACK) in_progress--;
    close_conn(c, 1);
    return;
  }
  if ((events & EPOLLOUT) && c->state != CLOSED) flush_conn(c);
}

static void poll_once(int timeout_ms) {
  static struct epoll_event events[1024];
  int n = epoll_wait(ep, events, 1024, timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return;
    die("epoll_wait");
  }
  uint64_t t = now_ns();
  for (int i = 0; i < n; i++) on_event(&conns[events[i].data.u32], events[i].events, t);
  flush_dirty();
}

/* ---- set-up ---- */

static char *field(char **line) {
  char *start = *line, *tab = strchr(start, '\t');
  if (tab) {
    *tab = 0;
    *line = tab + 1;
  } else {
    *line = start + strlen(start);
  }
  return strdup(start);
}

static void load_creds(void) {
  FILE *f = fopen(opt.creds, "r");
  if (!f) die(opt.creds);
  int cap = 1024;
  conns = calloc((size_t)cap, sizeof *conns);
  char *line = NULL;
  size_t line_cap = 0;
  ssize_t got;
  while ((got = getline(&line, &line_cap, f)) > 0) {
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = 0;
    if (got == 0) continue;
    if (opt.conns_max && nconns >= opt.conns_max) break;
    if (nconns == cap) {
      cap *= 2;
      conns = realloc(conns, (size_t)cap * sizeof *conns);
      memset(conns + nconns, 0, (size_t)(cap - nconns) * sizeof *conns);
    }
    struct conn *c = &conns[nconns++];
    char *rest = line;
    c->client_id = field(&rest);
    c->username = field(&rest);
    c->password = field(&rest);
    c->topic = field(&rest);
    if (!c->topic[0]) {
      fprintf(stderr, "loadgen: line %d of %s has no topic\n", nconns, opt.creds);
      exit(2);
    }
    c->fd = -1;
    c->state = IDLE;
    c->port_idx = opt.nports ? (nconns - 1 + opt.port_offset) % opt.nports : 0;
    c->id_space = opt.window * 8 < 64 ? 64 : (opt.window * 8 > 65535 ? 65535 : opt.window * 8);
    c->sent_at = calloc((size_t)c->id_space, sizeof *c->sent_at);
    c->next_id = 1;
    build_publish(c);
  }
  free(line);
  fclose(f);
  if (nconns == 0) {
    fprintf(stderr, "loadgen: no connections in %s\n", opt.creds);
    exit(2);
  }
  dirty_list = calloc((size_t)nconns, sizeof *dirty_list);
}

static void usage(void) {
  fprintf(stderr,
          "usage: loadgen --creds FILE [--mode saturate|rate|connect] [--host 127.0.0.1] [--port 1883]\n"
          "               [--conns N] [--window 10] [--payload 200] [--seconds 10] [--warmup 2]\n"
          "               [--rate 5000] [--concurrency 200] [--hold] [--keepalive 0]\n"
          "               [--device] [--reconnect] [--ports P1,P2,...] [--port-offset K] [--source-net B]\n"
          "               [--connect-timeout 120]\n");
  exit(2);
}

static void parse_args(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED() \
  do {         \
    if (!v) usage(); \
    i++;       \
  } while (0)
    if (!strcmp(a, "--mode")) {
      NEED();
      opt.mode = !strcmp(v, "saturate") ? SATURATE : !strcmp(v, "rate") ? RATE : !strcmp(v, "connect") ? CONNECT : (usage(), SATURATE);
    } else if (!strcmp(a, "--host")) { NEED(); opt.host = v; }
    else if (!strcmp(a, "--port")) { NEED(); opt.port = atoi(v); }
    else if (!strcmp(a, "--creds")) { NEED(); opt.creds = v; }
    else if (!strcmp(a, "--conns")) { NEED(); opt.conns_max = atoi(v); }
    else if (!strcmp(a, "--window")) { NEED(); opt.window = atoi(v); }
    else if (!strcmp(a, "--payload")) { NEED(); opt.payload = atoi(v); }
    else if (!strcmp(a, "--seconds")) { NEED(); opt.seconds = atof(v); }
    else if (!strcmp(a, "--warmup")) { NEED(); opt.warmup = atof(v); }
    else if (!strcmp(a, "--rate")) { NEED(); opt.rate = atof(v); }
    else if (!strcmp(a, "--concurrency")) { NEED(); opt.concurrency = atoi(v); }
    else if (!strcmp(a, "--keepalive")) { NEED(); opt.keepalive = atoi(v); }
    else if (!strcmp(a, "--hold")) opt.hold = 1;
    else if (!strcmp(a, "--device")) opt.device = 1;
    else if (!strcmp(a, "--reconnect")) opt.reconnect = 1;
    else if (!strcmp(a, "--source-net")) { NEED(); opt.source_net = atoi(v); }
    else if (!strcmp(a, "--connect-timeout")) { NEED(); opt.connect_timeout = atof(v); }
    else if (!strcmp(a, "--port-offset")) { NEED(); opt.port_offset = atoi(v); }
    else if (!strcmp(a, "--ports")) {
      NEED();
      char *list = strdup(v), *save = NULL;
      for (char *tok = strtok_r(list, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (opt.nports == MAX_PORTS) usage();
        opt.ports[opt.nports++] = atoi(tok);
      }
      free(list);
    }
    else usage();
  }
  if (opt.source_net > 255 || opt.connect_timeout <= 0 || (opt.reconnect && !opt.nports)) usage();
  if (!opt.creds || opt.window < 1 || opt.window > 8000 || opt.payload < 0 || opt.payload > 1 << 20 || opt.concurrency < 1 || opt.rate <= 0) usage();
}

static void on_signal(int sig) {
  (void)sig;
  stop_requested = 1;
}

static uint64_t status_at;

/* --device: "status <ready> <reconnects> <unix us>" every 250 ms. */
static void print_status(void) {
  uint64_t t = now_ns();
  if (!opt.device || t < status_at) return;
  status_at = t + 250000000ull;
  printf("status %llu %llu %llu\n", (unsigned long long)ready_now, (unsigned long long)reconnects, (unsigned long long)wall_us());
}

static int all_settled(void) {
  if (opt.reconnect) return ready_now >= (uint64_t)nconns;
  if (opt.device) return ready_now + refused + failed >= (uint64_t)nconns;
  return connected + refused + failed >= (uint64_t)nconns;
}

static void connect_all(double timeout_s) {
  uint64_t deadline = now_ns() + (uint64_t)(timeout_s * 1e9);
  open_more();
  while (!stop_requested && !all_settled() && now_ns() < deadline) {
    print_status();
    fflush(stdout);
    poll_once(50);
    open_more();
  }
}

static void print_result(const char *mode, double elapsed, double cpu, uint64_t extra_rate_base) {
  double rate = elapsed > 0 ? (double)extra_rate_base / elapsed : 0;
  printf("{\"mode\":\"%s\",\"conns\":%d,\"connected\":%llu,\"refused\":%llu,\"failed\":%llu,"
         "\"sent\":%llu,\"acked\":%llu,\"windowAcked\":%llu,\"seconds\":%.3f,\"rate\":%.1f,"
         "\"p50Ms\":%.3f,\"p90Ms\":%.3f,\"p99Ms\":%.3f,\"p999Ms\":%.3f,\"maxMs\":%.3f,"
         "\"cpuSeconds\":%.3f,\"cpuShare\":%.3f,\"ready\":%llu,\"reconnects\":%llu,\"c2d\":%llu,\"methods\":%llu}\n",
         mode, nconns, (unsigned long long)connected, (unsigned long long)refused, (unsigned long long)failed,
         (unsigned long long)sent_total, (unsigned long long)acked_total, (unsigned long long)window_acked, elapsed, rate,
         percentile(0.5), percentile(0.9), percentile(0.99), percentile(0.999), lat_max / 1000.0, cpu, elapsed > 0 ? cpu / elapsed : 0,
         (unsigned long long)ready_now, (unsigned long long)reconnects, (unsigned long long)c2d_seen, (unsigned long long)methods_answered);
  fflush(stdout);
}

/* After the window: stop sending and wait (10 s at most) for what is still unacknowledged. */
static void drain(void) {
  measuring = -1;
  uint64_t deadline = now_ns() + 10000000000ull;
  while (acked_total < sent_total && now_ns() < deadline && !stop_requested) {
    poll_once(20);
    int open = 0;
    for (int i = 0; i < nconns; i++) open += conns[i].state == READY;
    if (!open) break;
  }
}

static void disconnect_all(void) {
  static const uint8_t disconnect[2] = { 0xe0, 0x00 };
  for (int i = 0; i < nconns; i++) {
    struct conn *c = &conns[i];
    if (c->state != READY) continue;
    (void)send(c->fd, disconnect, 2, MSG_NOSIGNAL);
    close_conn(c, 0);
  }
}

int main(int argc, char **argv) {
  parse_args(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  load_creds();
  mono_at_start_ns = now_ns();
  wall_at_start_us = wall_us();
  ep = epoll_create1(0);
  if (ep < 0) die("epoll_create1");

  if (opt.mode == CONNECT) {
    uint64_t t0 = now_ns();
    double c0 = cpu_seconds();
    connect_all(opt.connect_timeout);
    double elapsed = (double)((connack_at_last > t0 ? connack_at_last : now_ns()) - t0) / 1e9;
    double cpu = cpu_seconds() - c0;
    fprintf(stderr, "loadgen: %llu of %d connected in %.2f s (%llu refused, %llu failed)\n", (unsigned long long)connected, nconns, elapsed,
            (unsigned long long)refused, (unsigned long long)failed);
    if (opt.hold) {
      printf("held %llu\n", (unsigned long long)(opt.device ? ready_now : connected));
      fflush(stdout);
      struct pollfd in = { .fd = 0, .events = POLLIN };
      while (!stop_requested) {
        poll_once(100);
        open_more();
        print_status();
        fflush(stdout);
        if (poll(&in, 1, 0) > 0) {
          char b[64];
          if (read(0, b, sizeof b) <= 0) break;
        }
      }
    }
    shutting_down = 1;
    print_result("connect", elapsed, cpu, connected);
    disconnect_all();
    return 0;
  }

  /* saturate and rate: connect first (not measured), then warm up, then measure. */
  measuring = -1; /* no publishing until every connection is up */
  connect_all(120);
  if (connected == 0) {
    fprintf(stderr, "loadgen: no connection accepted (%llu refused, %llu failed)\n", (unsigned long long)refused, (unsigned long long)failed);
    print_result(opt.mode == SATURATE ? "saturate" : "rate", 0, 0, 0);
    return 1;
  }
  measuring = 0;
  uint64_t start = now_ns();
  uint64_t window_start = start + (uint64_t)(opt.warmup * 1e9);
  uint64_t end = window_start + (uint64_t)(opt.seconds * 1e9);
  double cpu_at_window = 0;
  uint64_t rate_sent = 0;
  int rr = 0;
  if (opt.mode == SATURATE) {
    for (int i = 0; i < nconns; i++) fill_window(&conns[i], start);
    flush_dirty();
  }
  for (;;) {
    uint64_t t = now_ns();
    if (measuring == 0 && t >= window_start) {
      measuring = 1;
      cpu_at_window = cpu_seconds();
      window_start = t;
    }
    if (t >= end || stop_requested) break;
    if (opt.mode == RATE) {
      /* Publishes due since the start, round robin over connections with room in their window. */
      uint64_t due = (uint64_t)(opt.rate * (double)(t - start) / 1e9);
      int full = 0;
      while (rate_sent < due && full < nconns) {
        struct conn *c = &conns[rr];
        rr = (rr + 1) % nconns;
        if (publish_one(c, t)) {
          rate_sent++;
          full = 0;
        } else {
          full++;
        }
      }
      flush_dirty();
      poll_once(1);
    } else {
      poll_once(10);
    }
  }
  uint64_t window_end = now_ns();
  double cpu = cpu_seconds() - cpu_at_window;
  double elapsed = (double)(window_end - window_start) / 1e9;
  drain();
  print_result(opt.mode == SATURATE ? "saturate" : "rate", elapsed, cpu, window_acked);
  disconnect_all();
  return 0;
}
