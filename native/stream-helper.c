// berth-stream-helper: the byte relays behind exec, attach and port-forward that Node cannot do itself. Node cannot
// receive a pty master over SCM_RIGHTS, cannot speak SOCK_SEQPACKET and must not setns in its multi-threaded
// process; this single-threaded program does each in a poll() loop. Every relay holds at most one fixed buffer per
// direction and reads a side only when that buffer is empty, so a slow reader pushes back on the writer.
//
//   tty-exec <runtime> <root> <id> <process.json> [rows cols]
//       `<runtime> exec -d` with a console socket; relays stdin -> pty master -> stdout. fd 3 (optional): resize
//       lines "rows cols\n". fd 4 (optional): one status line "exit <code>\n" once the process is reaped. Exit
//       code: the process's (128+n for signal n); 125 when it never ran.
//   attach <attach-socket> [--stdin]
//       conmon's attach socket -> stdout as frames [id 1|2][u32 BE length][payload]; with --stdin, stdin -> socket.
//   port-forward <netns-file> <port>
//       setns(net), TCP to 127.0.0.1 (then ::1) <port>, both ways with half-close. Exit 2 when the connect fails.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define RELAY_BUF 65536
#define ATTACH_SEND_MAX 8192       // conmon reads at most 32767 bytes per packet; stay well under
#define FRAME_HEADER 5             // [stream id][u32 big-endian length]
#define DRAIN_QUIET_MS 200         // after the exec'd process is gone, stop once the pty has been quiet this long
#define KILL_WAIT_MS 3000          // after SIGTERM, how long to wait for the killed process to be reaped
#define CONNECT_TIMEOUT_MS 10000
#define EXIT_NEVER_RAN 125
#define EXIT_USAGE 64

enum pump_kind { PUMP_STREAM, PUMP_FRAME_IN, PUMP_PACKET_OUT };
enum eof_action { EOF_NONE, EOF_SHUT_WR, EOF_CLOSE_OUT, EOF_VEOF };

// One direction of a relay. buf holds bytes read from `in` and not yet written to `out`.
struct pump {
  const char *name;
  int in, out;
  enum pump_kind kind;
  enum eof_action on_eof;
  bool in_done;   // no more reads: EOF or a read error
  bool out_done;  // destination gone, or the EOF action done with nothing left to write
  bool eof_sent;
  bool failed;    // an I/O error (not a clean EOF) ended it
  bool dest_gone; // the destination hung up (EPIPE and the like)
  uint64_t total; // bytes read so far
  int pin, pout;  // indices into this round's pollfd array, -1 when not polled
  size_t off, len;
  unsigned char buf[RELAY_BUF + FRAME_HEADER];
};

static void say(const char *fmt, ...) {
  static const char prefix[] = "berth-stream-helper: ";
  char line[1024];
  memcpy(line, prefix, sizeof(prefix) - 1);
  size_t room = sizeof(line) - sizeof(prefix); // keeps one byte for the newline
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line + sizeof(prefix) - 1, room, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  size_t len = sizeof(prefix) - 1 + ((size_t)n < room ? (size_t)n : room - 1);
  line[len++] = '\n';
  // One write per line, so it does not interleave with the runtime's messages on the same stderr; diagnostics
  // only, so a short write is not worth a retry loop.
  ssize_t w = write(2, line, len);
  (void)w;
}

static bool fd_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

static int set_flags(int fd, bool nonblock) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return -1;
  if (fcntl(fd, F_SETFL, nonblock ? fl | O_NONBLOCK : fl & ~O_NONBLOCK) < 0) return -1;
  return fcntl(fd, F_SETFD, FD_CLOEXEC);
}

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out) {
  if (s == NULL || *s < '0' || *s > '9') return false;
  errno = 0;
  char *end = NULL;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || *end != '\0' || v > max) return false;
  *out = v;
  return true;
}

// SIGCHLD and the stop signals arrive through a signalfd, so the poll loop sees them in order with the I/O.
// SIGPIPE is ignored: a closed peer shows up as EPIPE where we can handle it.
static int setup_signals(sigset_t *old) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  if (sigprocmask(SIG_BLOCK, &set, old) < 0) return -1;
  signal(SIGPIPE, SIG_IGN);
  return signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
}

// Returns the first stop signal read (0 if none); sets *chld when a SIGCHLD was among them.
static int read_signals(int sfd, bool *chld) {
  struct signalfd_siginfo si;
  int stop = 0;
  while (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
    if (si.ssi_signo == SIGCHLD) *chld = true;
    else if (stop == 0) stop = (int)si.ssi_signo;
  }
  return stop;
}

// ---- relays ----

static void pump_init(struct pump *p, const char *name, int in, int out, enum pump_kind kind, enum eof_action on_eof) {
  memset(p, 0, offsetof(struct pump, buf));
  p->name = name;
  p->in = in;
  p->out = out;
  p->kind = kind;
  p->on_eof = on_eof;
  p->pin = p->pout = -1;
}

static bool pump_finished(const struct pump *p) { return p->out_done; }

// Destination gone: what is buffered can never be delivered, and reading more would only buffer more.
static void pump_kill(struct pump *p) {
  p->in_done = true;
  p->out_done = true;
  p->off = p->len = 0;
}

static void pump_register(struct pump *p, struct pollfd *pfds, int *n) {
  p->pin = p->pout = -1;
  if (pump_finished(p)) return;
  if (p->len > 0) {
    pfds[*n] = (struct pollfd){.fd = p->out, .events = POLLOUT};
    p->pout = (*n)++;
  } else if (!p->in_done) {
    pfds[*n] = (struct pollfd){.fd = p->in, .events = POLLIN};
    p->pin = (*n)++;
  }
}

static void pump_write(struct pump *p) {
  while (p->len > p->off) {
    ssize_t n;
    if (p->kind == PUMP_PACKET_OUT) {
      n = send(p->out, p->buf, p->len, MSG_NOSIGNAL); // a packet goes whole or not at all
      if (n >= 0) n = (ssize_t)(p->len - p->off);
    } else {
      n = write(p->out, p->buf + p->off, p->len - p->off);
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno != EPIPE && errno != ECONNRESET && errno != EIO) {
        say("%s: write: %s", p->name, strerror(errno));
        p->failed = true;
      }
      p->dest_gone = true;
      pump_kill(p);
      return;
    }
    p->off += (size_t)n;
  }
  p->off = p->len = 0;
}

// Reads once into the empty buffer. conmon's packets start with its pipe number (2 stdout, 3 stderr); they are
// re-framed here so the stream ids survive the byte stream to Node.
static void pump_read(struct pump *p) {
  ssize_t n;
  unsigned char pipe_no = 0;
  for (;;) {
    if (p->kind == PUMP_FRAME_IN) {
      struct iovec iov = {.iov_base = p->buf + FRAME_HEADER - 1, .iov_len = RELAY_BUF + 1};
      struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
      n = recvmsg(p->in, &msg, MSG_CMSG_CLOEXEC);
      if (n > 0 && (msg.msg_flags & MSG_TRUNC)) say("%s: packet larger than %d bytes truncated", p->name, RELAY_BUF);
      if (n > 0) pipe_no = p->buf[FRAME_HEADER - 1];
    } else {
      n = read(p->in, p->buf, p->kind == PUMP_PACKET_OUT ? ATTACH_SEND_MAX : RELAY_BUF);
    }
    if (n >= 0 || errno != EINTR) break;
  }
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return;
    // EIO on a pty master: every slave fd is closed, the terminal's EOF
    if (errno != EIO) {
      say("%s: read: %s", p->name, strerror(errno));
      p->failed = true;
    }
    p->in_done = true;
    return;
  }
  if (n == 0) {
    p->in_done = true;
    return;
  }
  p->total += (uint64_t)n;
  if (p->kind == PUMP_FRAME_IN) {
    if (pipe_no != 2 && pipe_no != 3) return; // nothing else is defined; drop it rather than guess
    uint32_t len = (uint32_t)(n - 1);
    p->buf[0] = pipe_no == 2 ? 1 : 2;
    p->buf[1] = (unsigned char)(len >> 24);
    p->buf[2] = (unsigned char)(len >> 16);
    p->buf[3] = (unsigned char)(len >> 8);
    p->buf[4] = (unsigned char)len;
    p->len = FRAME_HEADER + len;
  } else {
    p->len = (size_t)n;
  }
  p->off = 0;
  pump_write(p); // most of the time the other side can take it at once: save a poll round
}

// The source is done and everything read has been written: pass the end on.
static void pump_eof(struct pump *p) {
  if (!p->in_done || p->len > 0 || p->out_done) return;
  if (p->eof_sent || p->on_eof == EOF_NONE) {
    p->out_done = true;
    return;
  }
  p->eof_sent = true;
  switch (p->on_eof) {
  case EOF_SHUT_WR:
    if (shutdown(p->out, SHUT_WR) < 0 && errno != ENOTCONN) say("%s: shutdown: %s", p->name, strerror(errno));
    p->out_done = true;
    break;
  case EOF_CLOSE_OUT: {
    // Replace rather than close, so the fd number is not reused by a later open.
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null < 0 || dup2(null, p->out) < 0) close(p->out);
    if (null >= 0) close(null);
    p->out_done = true;
    break;
  }
  case EOF_VEOF: {
    // The terminal's own end-of-file: VEOF (normally ^D) ends a read() in canonical mode at the start of a line,
    // as a shell or cat expects when kubectl's stdin closes. In raw mode the program sees the byte and decides.
    struct termios t;
    unsigned char c = 4;
    if (tcgetattr(p->out, &t) == 0 && t.c_cc[VEOF] != _POSIX_VDISABLE) c = t.c_cc[VEOF];
    p->buf[0] = c;
    p->off = 0;
    p->len = 1;
    pump_write(p);
    break;
  }
  case EOF_NONE:
    break;
  }
}

static void pump_handle(struct pump *p, const struct pollfd *pfds) {
  if (p->pout >= 0 && pfds[p->pout].revents) pump_write(p);
  if (p->pin >= 0 && pfds[p->pin].revents) pump_read(p);
  p->pin = p->pout = -1;
  pump_eof(p);
}

// ---- tty-exec ----

struct reaped {
  pid_t pid;
  int status;
};

struct tty_exec {
  char dir[80], sock[96], pidfile[96]; // TMPDIR is capped at 60 bytes: the socket path fits sun_path
  int lsock, master, resize_fd, status_fd;
  pid_t runtime, proc;
  bool runtime_done, proc_done, stopping;
  int runtime_status, proc_status;
  struct reaped early[16]; // children reaped before we knew which pid was the process
  unsigned early_next;
  unsigned short rows, cols;
  bool size_pending;
  char rbuf[64];
  size_t rlen;
  bool rskip;
};

static int code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 255;
}

// Our private dir holds only flat files: the socket, the pid file and whatever temp file the runtime wrote it by.
static void cleanup_dir(struct tty_exec *t) {
  if (t->dir[0] == '\0') return;
  int dfd = open(t->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
  DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
  struct dirent *e;
  while (d != NULL && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) unlinkat(dfd, e->d_name, 0);
  }
  if (d != NULL) closedir(d);
  else if (dfd >= 0) close(dfd);
  rmdir(t->dir);
  t->dir[0] = '\0';
}

static void apply_size(struct tty_exec *t) {
  if (!t->size_pending || t->master < 0) return;
  struct winsize ws = {.ws_row = t->rows, .ws_col = t->cols};
  if (ioctl(t->master, TIOCSWINSZ, &ws) < 0) say("resize: %s", strerror(errno));
  t->size_pending = false;
}

// fd 3 carries "rows cols\n" lines; a malformed line is reported and skipped, an overlong one dropped whole.
static void read_resize(struct tty_exec *t) {
  ssize_t n = read(t->resize_fd, t->rbuf + t->rlen, sizeof(t->rbuf) - 1 - t->rlen);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (n <= 0) {
    close(t->resize_fd);
    t->resize_fd = -1;
    return;
  }
  t->rlen += (size_t)n;
  t->rbuf[t->rlen] = '\0';
  char *line = t->rbuf, *nl;
  while ((nl = strchr(line, '\n')) != NULL) {
    *nl = '\0';
    if (!t->rskip) {
      unsigned long r, c;
      char *sp = strchr(line, ' ');
      if (sp != NULL) *sp = '\0';
      if (sp != NULL && parse_uint(line, 65535, &r) && parse_uint(sp + 1, 65535, &c)) {
        t->rows = (unsigned short)r;
        t->cols = (unsigned short)c;
        t->size_pending = true;
      } else {
        say("resize: ignoring a malformed line");
      }
    }
    t->rskip = false;
    line = nl + 1;
  }
  t->rlen = strlen(line);
  memmove(t->rbuf, line, t->rlen);
  if (t->rlen == sizeof(t->rbuf) - 1) {
    t->rlen = 0;
    t->rskip = true;
  }
  apply_size(t);
}

static void reap_children(struct tty_exec *t) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    if (pid == t->runtime) {
      t->runtime_done = true;
      t->runtime_status = status;
    } else if (t->proc > 0 && pid == t->proc) {
      t->proc_done = true;
      t->proc_status = status;
    } else {
      t->early[t->early_next++ % 16] = (struct reaped){pid, status};
    }
  }
}

// Takes the pty master runc/crun sends over the console socket (SCM_RIGHTS, with the pty's name as data).
static int receive_master(struct tty_exec *t) {
  int conn = accept4(t->lsock, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0) return errno == EAGAIN || errno == EINTR ? 0 : -1;
  // The runtime sends right after connecting; a bound keeps a stuck one from blocking us (signals included).
  struct timeval tv = {.tv_sec = 10};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  char name[4096];
  union {
    char buf[CMSG_SPACE(sizeof(int) * 4)];
    struct cmsghdr align;
  } ctl;
  struct iovec iov = {.iov_base = name, .iov_len = sizeof(name)};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.buf, .msg_controllen = sizeof(ctl.buf)};
  ssize_t n;
  do n = recvmsg(conn, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  int saved = errno;
  close(conn);
  close(t->lsock);
  t->lsock = -1;
  unlink(t->sock);
  if (n < 0) {
    errno = saved;
    return -1;
  }
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (t->master < 0 && isatty(fd)) t->master = fd;
      else close(fd);
    }
  }
  if (t->master < 0) {
    errno = EPROTO;
    return -1;
  }
  if (set_flags(t->master, true) < 0) return -1;
  apply_size(t);
  return 1;
}

static void exec_runtime(struct tty_exec *t, char **argv, const sigset_t *old) {
  // argv: runtime root id process.json
  char *args[] = {argv[0], "--root", argv[1], "exec", "-d", "--console-socket", t->sock, "--pid-file", t->pidfile,
                  "--process", argv[3], argv[2], NULL};
  sigprocmask(SIG_SETMASK, old, NULL);
  signal(SIGPIPE, SIG_DFL);
  int null = open("/dev/null", O_RDWR);
  if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0) {
    say("runtime: /dev/null: %s", strerror(errno));
    _exit(EXIT_NEVER_RAN);
  }
  // stderr stays ours: the runtime's own messages reach berth through it
  if (close_range(3, ~0U, 0) < 0) {
    for (int fd = 3; fd < 1024; fd++) close(fd);
  }
  execv(argv[0], args);
  say("cannot run %s: %s", argv[0], strerror(errno));
  _exit(EXIT_NEVER_RAN);
}

// The runtime exited 0: its pid file names the exec'd process, which it left to us (we are its subreaper).
static int take_process_pid(struct tty_exec *t) {
  char text[32] = {0};
  int fd = open(t->pidfile, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, text, sizeof(text) - 1);
  close(fd);
  unsigned long pid;
  if (n <= 0) return -1;
  text[n] = '\0';
  text[strcspn(text, "\n")] = '\0';
  if (!parse_uint(text, INT_MAX, &pid) || pid < 2) return -1;
  t->proc = (pid_t)pid;
  for (unsigned i = 0; i < 16; i++) {
    if (t->early[i].pid == t->proc) {
      t->proc_done = true;
      t->proc_status = t->early[i].status;
    }
  }
  return 0;
}

static void kill_process(struct tty_exec *t) {
  // The process is our child (not yet reaped), so its pid cannot have been reused; it leads its own session.
  if (t->proc > 0 && !t->proc_done) {
    kill(-t->proc, SIGKILL);
    kill(t->proc, SIGKILL);
  }
}

// Last resort, when we cannot wait for the runtime to say which pid is the process: SIGKILL the runtime and every
// child we have. As subreaper we inherit whatever the killed runtime had started, the process included.
static void kill_all(struct tty_exec *t) {
  kill_process(t);
  if (!t->runtime_done) kill(t->runtime, SIGKILL);
  DIR *d = opendir("/proc");
  if (d == NULL) return;
  pid_t self = getpid();
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    unsigned long pid;
    char file[64], stat[512];
    if (!parse_uint(e->d_name, INT_MAX, &pid)) continue;
    snprintf(file, sizeof(file), "/proc/%lu/stat", pid);
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    ssize_t n = read(fd, stat, sizeof(stat) - 1);
    close(fd);
    if (n <= 0) continue;
    stat[n] = '\0';
    char *rp = strrchr(stat, ')'); // comm may hold spaces and parens
    char state;
    int ppid;
    if (rp != NULL && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == self) kill((pid_t)pid, SIGKILL);
  }
  closedir(d);
}

// Stop without orphaning: kill the process if known; if the runtime is still starting it, let the runtime finish
// (its pid file then names the process) and kill it then. kill_all only when the runtime does not finish in time.
static void begin_stop(struct tty_exec *t, int64_t *deadline) {
  if (t->stopping) return;
  t->stopping = true;
  *deadline = now_ms() + KILL_WAIT_MS;
  kill_process(t);
}

static int finish_tty(struct tty_exec *t, int code, bool ran) {
  cleanup_dir(t);
  if (ran && t->status_fd >= 0) {
    char line[32];
    int n = snprintf(line, sizeof(line), "exit %d\n", code);
    ssize_t w = write(t->status_fd, line, (size_t)n);
    (void)w;
  }
  return ran ? code : EXIT_NEVER_RAN;
}

// Parses the arguments, becomes subreaper, makes the console socket and forks the runtime. Returns -1 once the
// runtime runs, else the exit code.
static int tty_start(struct tty_exec *t, int argc, char **argv, int *sfd) {
  if (argc != 4 && argc != 6) {
    say("usage: tty-exec <runtime> <root> <id> <process.json> [rows cols]");
    return EXIT_USAGE;
  }
  if (argc == 6) {
    unsigned long r, c;
    if (!parse_uint(argv[4], 65535, &r) || !parse_uint(argv[5], 65535, &c)) {
      say("rows and cols must be integers from 0 to 65535");
      return EXIT_USAGE;
    }
    t->rows = (unsigned short)r;
    t->cols = (unsigned short)c;
    t->size_pending = true;
  }
  if (t->resize_fd >= 0 && set_flags(t->resize_fd, true) < 0) t->resize_fd = -1;
  if (t->status_fd >= 0) fcntl(t->status_fd, F_SETFD, FD_CLOEXEC);

  // Subreaper: `exec -d` leaves the process behind when the runtime exits; it becomes our child and we get its
  // exit status from waitpid (runc refuses a console socket without -d). Parent-death: berth gone, session gone.
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0 || prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) {
    say("prctl: %s", strerror(errno));
    return EXIT_NEVER_RAN;
  }
  sigset_t old;
  *sfd = setup_signals(&old);
  if (*sfd < 0) {
    say("signals: %s", strerror(errno));
    return EXIT_NEVER_RAN;
  }

  const char *tmp = getenv("TMPDIR");
  if (tmp == NULL || tmp[0] != '/' || strlen(tmp) > 60) tmp = "/tmp";
  snprintf(t->dir, sizeof(t->dir), "%s/berth-tty-XXXXXX", tmp);
  if (mkdtemp(t->dir) == NULL) {
    say("mkdtemp %s: %s", t->dir, strerror(errno));
    t->dir[0] = '\0';
    return EXIT_NEVER_RAN;
  }
  snprintf(t->sock, sizeof(t->sock), "%s/console.sock", t->dir);
  snprintf(t->pidfile, sizeof(t->pidfile), "%s/pid", t->dir);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", t->sock);
  t->lsock = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (t->lsock < 0 || bind(t->lsock, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(t->lsock, 1) < 0) {
    say("console socket %s: %s", t->sock, strerror(errno));
    return finish_tty(t, 0, false);
  }

  t->runtime = fork();
  if (t->runtime < 0) {
    say("fork: %s", strerror(errno));
    return finish_tty(t, 0, false);
  }
  if (t->runtime == 0) exec_runtime(t, argv, &old);
  return -1;
}

static int tty_exec(int argc, char **argv, bool resize_open, bool status_open) {
  struct tty_exec t = {.lsock = -1, .master = -1, .resize_fd = resize_open ? 3 : -1, .status_fd = status_open ? 4 : -1};
  int sfd = -1;
  int started = tty_start(&t, argc, argv, &sfd);
  if (started >= 0) return started;

  struct pump in, out;
  pump_init(&in, "stdin -> tty", 0, -1, PUMP_STREAM, EOF_VEOF);
  pump_init(&out, "tty -> stdout", -1, 1, PUMP_STREAM, EOF_CLOSE_OUT);
  int64_t quiet_until = 0, stop_deadline = 0;
  if (set_flags(0, true) < 0 || set_flags(1, true) < 0) {
    say("stdio: %s", strerror(errno));
    begin_stop(&t, &stop_deadline);
  }
  for (;;) {
    if (t.runtime_done && t.proc == 0 && !t.stopping) {
      if (t.lsock >= 0 && receive_master(&t) < 0) say("console socket: %s", strerror(errno));
      int rc = code_of(t.runtime_status);
      if (rc != 0) {
        // Its own message is already on our stderr. Kill whatever it may have left behind.
        say("%s exec failed (%s %d)", argv[0], WIFSIGNALED(t.runtime_status) ? "signal" : "exit code",
            WIFSIGNALED(t.runtime_status) ? WTERMSIG(t.runtime_status) : rc);
        take_process_pid(&t);
        kill_all(&t);
        return finish_tty(&t, 0, false);
      }
      if (take_process_pid(&t) < 0 || t.master < 0) {
        say(t.master < 0 ? "the runtime sent no terminal" : "the runtime wrote no usable pid file");
        kill_all(&t);
        return finish_tty(&t, 0, false);
      }
      in.out = t.master;
      out.in = t.master;
    }
    if (t.proc_done && quiet_until == 0) {
      quiet_until = now_ms() + DRAIN_QUIET_MS;
      pump_kill(&in); // nobody left to read it
    }
    if (t.proc_done && (pump_finished(&out) || (out.len == 0 && now_ms() >= quiet_until))) break;
    if (t.stopping && t.proc_done) break;
    if (t.stopping && now_ms() >= stop_deadline) {
      say(t.proc > 0 ? "the process did not go away after SIGKILL" : "the runtime did not finish starting the process");
      kill_all(&t);
      return finish_tty(&t, 128 + SIGKILL, t.proc > 0);
    }

    struct pollfd pfds[8];
    int n = 0;
    pfds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    int li = -1, ri = -1;
    if (t.lsock >= 0) {
      li = n;
      pfds[n++] = (struct pollfd){.fd = t.lsock, .events = POLLIN};
    }
    if (t.resize_fd >= 0) {
      ri = n;
      pfds[n++] = (struct pollfd){.fd = t.resize_fd, .events = POLLIN};
    }
    bool relaying = t.master >= 0 && !t.stopping;
    if (relaying && in.out >= 0) pump_register(&in, pfds, &n);
    if (relaying && out.in >= 0) pump_register(&out, pfds, &n);
    int timeout = -1;
    // the quiet wait applies only while nothing is pending for stdout (else we wait for stdout, however long)
    if (quiet_until > 0 && out.len == 0) timeout = (int)(quiet_until > now_ms() ? quiet_until - now_ms() : 0);
    if (t.stopping) timeout = (int)(stop_deadline > now_ms() ? stop_deadline - now_ms() : 0);
    if (poll(pfds, (nfds_t)n, timeout) < 0 && errno != EINTR) {
      say("poll: %s", strerror(errno));
      kill_all(&t);
      return finish_tty(&t, 0, false);
    }
    bool chld = false;
    int stop = pfds[0].revents ? read_signals(sfd, &chld) : 0;
    if (li >= 0 && pfds[li].revents && receive_master(&t) < 0) {
      say("console socket: %s", strerror(errno));
      begin_stop(&t, &stop_deadline);
    }
    if (t.master >= 0 && in.out < 0) { // relay from the first byte, even before the runtime has exited
      in.out = t.master;
      out.in = t.master;
    }
    if (ri >= 0 && pfds[ri].revents) read_resize(&t);
    if (relaying && in.out >= 0) {
      uint64_t before = out.total;
      pump_handle(&in, pfds);
      pump_handle(&out, pfds);
      if (t.proc_done && out.total != before) quiet_until = now_ms() + DRAIN_QUIET_MS;
      if (out.dest_gone && !t.stopping) { // stdout is gone: nobody sees the session any more
        say("stdout closed: killing the process");
        begin_stop(&t, &stop_deadline);
      }
    }
    if (chld) reap_children(&t);
    if (stop != 0) begin_stop(&t, &stop_deadline);
    // Stopped while starting: once the runtime is gone, its pid file says whether it got as far as the process.
    if (t.stopping && t.runtime_done && t.proc == 0) {
      if (code_of(t.runtime_status) != 0 || take_process_pid(&t) < 0) {
        kill_all(&t);
        return finish_tty(&t, 0, false);
      }
      kill_process(&t);
    }
  }
  return finish_tty(&t, code_of(t.proc_status), true);
}

// ---- attach ----

static int attach(int argc, char **argv) {
  if (argc < 2 || argc > 3 || (argc == 3 && strcmp(argv[2], "--stdin") != 0)) {
    say("usage: attach <attach-socket> [--stdin]");
    return EXIT_USAGE;
  }
  bool with_stdin = argc == 3;
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) say("prctl: %s", strerror(errno));
  sigset_t old;
  int sfd = setup_signals(&old);
  if (sfd < 0) {
    say("signals: %s", strerror(errno));
    return 1;
  }
  // conmon's socket path can exceed sun_path's 108 bytes: reach it through our fd of its directory.
  char dirbuf[PATH_MAX], basebuf[PATH_MAX];
  if (snprintf(dirbuf, sizeof(dirbuf), "%s", argv[1]) >= (int)sizeof(dirbuf)) {
    say("attach socket path too long");
    return EXIT_USAGE;
  }
  snprintf(basebuf, sizeof(basebuf), "%s", argv[1]);
  const char *base = basename(basebuf);
  int dfd = open(dirname(dirbuf), O_PATH | O_DIRECTORY | O_CLOEXEC);
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  if (dfd < 0 ||
      snprintf(addr.sun_path, sizeof(addr.sun_path), "/proc/self/fd/%d/%s", dfd, base) >= (int)sizeof(addr.sun_path)) {
    say("connect to conmon's attach socket %s: %s", argv[1], dfd < 0 ? strerror(errno) : "name too long");
    return 2;
  }
  int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (sock < 0 || connect(sock, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
    say("connect to conmon's attach socket %s: %s", argv[1], strerror(errno));
    return 2;
  }
  close(dfd);
  if (set_flags(sock, true) < 0 || set_flags(1, true) < 0 || (with_stdin && set_flags(0, true) < 0)) {
    say("set non-blocking: %s", strerror(errno));
    return 1;
  }
  struct pump out, in;
  pump_init(&out, "attach -> stdout", sock, 1, PUMP_FRAME_IN, EOF_CLOSE_OUT);
  // stdin's end is passed on as SHUT_WR; conmon then closes the container's stdin if it was created stdin-once.
  pump_init(&in, "stdin -> attach", 0, sock, PUMP_PACKET_OUT, EOF_SHUT_WR);
  if (!with_stdin) in.out_done = true;
  while (!pump_finished(&out)) {
    struct pollfd pfds[4];
    int n = 0;
    pfds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    pump_register(&out, pfds, &n);
    pump_register(&in, pfds, &n);
    if (poll(pfds, (nfds_t)n, -1) < 0 && errno != EINTR) {
      say("poll: %s", strerror(errno));
      return 1;
    }
    bool chld = false;
    if (pfds[0].revents && read_signals(sfd, &chld) != 0) return 0; // detach: the container is not ours to stop
    pump_handle(&out, pfds);
    pump_handle(&in, pfds);
  }
  return out.failed ? 1 : 0;
}

// ---- port-forward ----

static int connect_timed(int family, const struct sockaddr *sa, socklen_t len, int *err) {
  int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    *err = errno;
    return -1;
  }
  if (connect(fd, sa, len) == 0) return fd;
  if (errno != EINPROGRESS) {
    *err = errno;
    close(fd);
    return -1;
  }
  struct pollfd p = {.fd = fd, .events = POLLOUT};
  int r;
  do r = poll(&p, 1, CONNECT_TIMEOUT_MS);
  while (r < 0 && errno == EINTR);
  socklen_t sl = sizeof(*err);
  if (r == 0) *err = ETIMEDOUT;
  else if (r < 0) *err = errno;
  else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, err, &sl) < 0) *err = errno;
  if (r > 0 && *err == 0) return fd;
  close(fd);
  return -1;
}

static int port_forward(int argc, char **argv) {
  unsigned long port;
  if (argc != 3 || !parse_uint(argv[2], 65535, &port) || port == 0) {
    say("usage: port-forward <netns-file> <port 1-65535>");
    return EXIT_USAGE;
  }
  if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0) say("prctl: %s", strerror(errno));
  sigset_t old;
  int sfd = setup_signals(&old);
  if (sfd < 0) {
    say("signals: %s", strerror(errno));
    return 1;
  }
  int ns = open(argv[1], O_RDONLY | O_CLOEXEC);
  if (ns < 0 || setns(ns, CLONE_NEWNET) < 0) {
    say("enter the pod's network namespace %s: %s", argv[1], strerror(errno));
    return 1;
  }
  close(ns);
  // As containerd does: IPv4 loopback first, then IPv6 for a server bound to ::1 only. The IPv4 error is the one
  // reported, since a pod without IPv6 fails the second try for an unrelated reason.
  struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port), .sin6_addr = IN6ADDR_LOOPBACK_INIT};
  int err4 = 0, err6 = 0;
  int sock = connect_timed(AF_INET, (struct sockaddr *)&v4, sizeof(v4), &err4);
  if (sock < 0) sock = connect_timed(AF_INET6, (struct sockaddr *)&v6, sizeof(v6), &err6);
  if (sock < 0) {
    say("connect to port %lu in the pod's network namespace: %s", port, strerror(err4));
    return 2;
  }
  if (set_flags(0, true) < 0 || set_flags(1, true) < 0) {
    say("set non-blocking: %s", strerror(errno));
    return 1;
  }
  struct pump up, down;
  pump_init(&up, "stdin -> port", 0, sock, PUMP_STREAM, EOF_SHUT_WR);
  pump_init(&down, "port -> stdout", sock, 1, PUMP_STREAM, EOF_CLOSE_OUT);
  while (!pump_finished(&up) || !pump_finished(&down)) {
    struct pollfd pfds[4];
    int n = 0;
    pfds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
    pump_register(&up, pfds, &n);
    pump_register(&down, pfds, &n);
    if (poll(pfds, (nfds_t)n, -1) < 0 && errno != EINTR) {
      say("poll: %s", strerror(errno));
      return 1;
    }
    bool chld = false;
    int stop = pfds[0].revents ? read_signals(sfd, &chld) : 0;
    if (stop != 0) return 128 + stop;
    pump_handle(&up, pfds);
    pump_handle(&down, pfds);
    // The port closed on us without a clean end: nothing more can flow either way.
    if (down.failed && !pump_finished(&up)) pump_kill(&up);
  }
  return up.failed || down.failed ? 1 : 0;
}

int main(int argc, char **argv) {
  // Note fds 3 and 4 (tty-exec's resize and status channels) before anything we open could take those numbers,
  // and make sure 0-2 exist so no socket of ours lands on them.
  bool fd3 = fd_open(3), fd4 = fd_open(4);
  for (int fd = 0; fd <= 2; fd++) {
    if (!fd_open(fd)) {
      int null = open("/dev/null", O_RDWR);
      if (null >= 0 && null != fd) {
        dup2(null, fd);
        close(null);
      }
    }
  }
  if (argc < 2) {
    say("usage: berth-stream-helper tty-exec|attach|port-forward ...");
    return EXIT_USAGE;
  }
  if (strcmp(argv[1], "tty-exec") == 0) return tty_exec(argc - 2, argv + 2, fd3, fd4);
  if (strcmp(argv[1], "attach") == 0) return attach(argc - 1, argv + 1);
  if (strcmp(argv[1], "port-forward") == 0) return port_forward(argc - 1, argv + 1);
  say("unknown mode %s", argv[1]);
  return EXIT_USAGE;
}
