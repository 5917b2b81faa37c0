// berth-pod-ns: makes a pod's namespaces in one process, where util-linux took four (unshare, sh, hostname, ip: an
// exec costs milliseconds each on a busy node, and RunPodSandbox waits for all of them). Single-threaded, so
// unshare(2) moves the whole process.
//
//   berth-pod-ns <pin-dir> <net|ipc|uts>... [--hostname NAME]
//
// unshare()s the named namespaces and pins each by bind-mounting /proc/self/ns/<kind> onto <pin-dir>/<kind> (an
// empty file berth made), as `ip netns add` does; then sets the hostname in the new UTS namespace and raises
// loopback in the new network namespace. Exit 0 on success; 3 for a hostname hostname(1) would refuse; 1 for any
// other failure, the failing step on stderr; 2 for bad usage. Pins made before a failure are the caller's to unmount.
//
//   berth-pod-ns --serve
//
// The same, without an exec per pod: berth starts one server and sends it requests on stdin; the server forks a
// child per request (the child unshares, never the server) and replies on stdout. For the usual net+ipc+uts it
// keeps one such child made ahead (a spare: see make_spare), so a pod does not wait for the kernel's unshare. A request is the one-shot argv
// after argv[0] prefixed by a decimal id, each field NUL-terminated, ended by an empty field:
//
//   id\0pin-dir\0kind\0...[--hostname\0NAME\0]\0
//
// at most REQ_MAX bytes. The reply is one line, "id code message\n": code as the one-shot exit status (1 with
// "killed by signal N" when the child died of a signal), message the child's stderr with control characters made
// spaces, empty on success. An oversize or malformed request whose id is readable gets code 2; one whose id is not
// ends the server (exit 1). Exits 0 at EOF on stdin, and dies with its parent.
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define ALL_KINDS (CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS)
#define REQ_MAX 8192    // bytes in one request, terminator included
#define FIELDS_MAX 16   // fields in one request, id included: a valid one has at most 7
#define ID_MAX 20       // digits in a request id
#define MSG_MAX 4096    // bytes of a child's stderr kept for the reply

static int fail(int code, const char *what, const char *arg) {
  fprintf(stderr, "berth-pod-ns: %s%s%s: %s\n", what, arg ? " " : "", arg ? arg : "", strerror(errno));
  return code;
}

// RFC 1123 names, as hostname(1) checks them: labels of letters, digits and '-', not starting or ending with '-'.
static bool valid_hostname(const char *name) {
  size_t len = strlen(name);
  if (len == 0 || len > 64) return false;
  size_t label = 0;
  for (size_t i = 0; i < len; i++) {
    char c = name[i];
    if (c == '.') {
      if (label == 0 || name[i - 1] == '-') return false;
      label = 0;
    } else if (isalnum((unsigned char)c) || (c == '-' && label > 0)) {
      label++;
    } else {
      return false;
    }
  }
  return label > 0 && name[len - 1] != '-';
}

static int loopback_up(void) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof(ifr));
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  int rc = ioctl(fd, SIOCGIFFLAGS, &ifr);
  if (rc == 0) {
    ifr.ifr_flags |= IFF_UP;
    rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
  }
  int saved = errno;
  close(fd);
  errno = saved;
  return rc;
}

// The work of both modes: parses the one-shot argv, makes the namespaces, and returns the exit code. Moves the
// calling process into the new namespaces, so the server only ever runs it in a forked child.
static int pod_ns(int argc, char **argv, bool prepared) {
  if (argc < 3) {
    fprintf(stderr, "usage: berth-pod-ns <pin-dir> <net|ipc|uts>... [--hostname NAME]\n");
    return 2;
  }
  const char *dir = argv[1];
  const char *hostname = NULL;
  const char *kinds[3];
  int nkinds = 0, flags = 0;
  for (int i = 2; i < argc; i++) {
    if (strcmp(argv[i], "--hostname") == 0 && i + 1 < argc) {
      hostname = argv[++i];
    } else if (nkinds < 3 && (strcmp(argv[i], "net") == 0 || strcmp(argv[i], "ipc") == 0 || strcmp(argv[i], "uts") == 0)) {
      kinds[nkinds++] = argv[i];
      flags |= argv[i][0] == 'n' ? CLONE_NEWNET : argv[i][0] == 'i' ? CLONE_NEWIPC : CLONE_NEWUTS;
    } else {
      fprintf(stderr, "berth-pod-ns: unexpected argument \"%s\"\n", argv[i]);
      return 2;
    }
  }
  if (hostname && !(flags & CLONE_NEWUTS)) {
    fprintf(stderr, "berth-pod-ns: --hostname needs a new uts namespace\n");
    return 2;
  }
  if (prepared && flags != ALL_KINDS) {
    fprintf(stderr, "berth-pod-ns: a spare holds net, ipc and uts, not a part of them\n");
    return 2;
  }
  if (!prepared && unshare(flags) < 0) return fail(1, "unshare", NULL);
  for (int i = 0; i < nkinds; i++) {
    char src[64], dst[4096];
    snprintf(src, sizeof(src), "/proc/self/ns/%s", kinds[i]);
    if ((size_t)snprintf(dst, sizeof(dst), "%s/%s", dir, kinds[i]) >= sizeof(dst)) {
      errno = ENAMETOOLONG;
      return fail(1, "pinning", dir);
    }
    if (mount(src, dst, NULL, MS_BIND, NULL) < 0) return fail(1, "pinning", dst);
  }
  if (hostname) {
    if (!valid_hostname(hostname)) {
      fprintf(stderr, "hostname: the specified hostname is invalid\n");
      return 3;
    }
    if (sethostname(hostname, strlen(hostname)) < 0) return fail(1, "sethostname", hostname);
  }
  if (!prepared && (flags & CLONE_NEWNET) && loopback_up() < 0) return fail(1, "bringing up loopback", NULL);
  return 0;
}

// ---- server mode

static int devnull = -1;

static void die(const char *what) {
  fprintf(stderr, "berth-pod-ns --serve: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void write_all(const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(STDOUT_FILENO, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) die("writing a reply"); // berth closed its end: nobody to serve
    buf += n;
    len -= (size_t)n;
  }
}

static void reply(const char *id, int code, char *msg) {
  // One line per reply: control characters (newlines among them) become spaces, trailing ones go.
  size_t len = strlen(msg);
  for (size_t i = 0; i < len; i++) if ((unsigned char)msg[i] < ' ' || msg[i] == 0x7f) msg[i] = ' ';
  while (len > 0 && msg[len - 1] == ' ') msg[--len] = '\0';
  char line[ID_MAX + 16 + MSG_MAX];
  int n = snprintf(line, sizeof(line), "%s %d %s\n", id, code, msg);
  if (n < 0) die("formatting a reply");
  if ((size_t)n >= sizeof(line)) {
    n = sizeof(line) - 1;
    line[n - 1] = '\n';
  }
  write_all(line, (size_t)n);
}

static bool readable_id(const char *id) {
  size_t len = strlen(id);
  if (len == 0 || len > ID_MAX) return false;
  for (size_t i = 0; i < len; i++) if (!isdigit((unsigned char)id[i])) return false;
  return true;
}

// A spare: a child that has already unshared net, ipc and uts and raised loopback (the kernel's new network
// namespace is most of a pod's time here) and waits on a pipe for a pod's pin dir and hostname. One is made at start
// and again after each use, while berth goes on with the pod; other sets of namespaces fork as before.
static struct {
  pid_t pid;
  int cmd; // we write the request (the one-shot argv after argv[0], NUL-terminated fields), then close
  int err; // its stderr
} spare = {-1, -1, -1};

static int spare_main(void) {
  if (unshare(ALL_KINDS) < 0) return fail(1, "unshare", NULL);
  if (loopback_up() < 0) return fail(1, "bringing up loopback", NULL);
  static char buf[REQ_MAX];
  size_t len = 0;
  for (;;) {
    ssize_t n = read(STDIN_FILENO, buf + len, sizeof(buf) - 1 - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(1, "reading the request", NULL);
    if (n == 0) break;
    len += (size_t)n;
    if (len == sizeof(buf) - 1) break; // the server sends at most REQ_MAX bytes, the id and terminator not among them
  }
  if (len == 0) return 0; // the server went away without a pod
  buf[len] = '\0';
  char *argv[FIELDS_MAX + 1];
  int argc = 0;
  argv[argc++] = "berth-pod-ns";
  for (size_t at = 0; at < len && argc < FIELDS_MAX; at += strlen(buf + at) + 1) argv[argc++] = buf + at;
  argv[argc] = NULL;
  return pod_ns(argc, argv, true);
}

static void make_spare(void) {
  int cmd[2], err[2];
  if (pipe2(cmd, O_CLOEXEC) < 0) return;
  if (pipe2(err, O_CLOEXEC) < 0) {
    close(cmd[0]);
    close(cmd[1]);
    return;
  }
  pid_t pid = fork();
  if (pid < 0) {
    close(cmd[0]);
    close(cmd[1]);
    close(err[0]);
    close(err[1]);
    return; // no spare: requests fork, as without one
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (dup2(err[1], STDERR_FILENO) < 0 || dup2(cmd[0], STDIN_FILENO) < 0 || dup2(devnull, STDOUT_FILENO) < 0) _exit(1);
    // Holding the write end would keep the request from ever ending.
    close(cmd[0]);
    close(cmd[1]);
    close(err[0]);
    close(err[1]);
    close(devnull);
    _exit(spare_main());
  }
  close(cmd[0]);
  close(err[1]);
  spare.pid = pid;
  spare.cmd = cmd[1];
  spare.err = err[0];
}

// A spare that is no longer waiting (killed, or its unshare failed) is reaped and dropped: the request forks instead,
// and reports such a failure itself.
static bool spare_alive(void) {
  if (spare.pid < 0) return false;
  int status;
  if (waitpid(spare.pid, &status, WNOHANG) == 0) return true;
  close(spare.cmd);
  close(spare.err);
  spare.pid = spare.cmd = spare.err = -1;
  return false;
}

// Whether the request (fields after the id) asks for exactly net, ipc and uts: what a spare holds.
static bool wants_spare(char **fields, int nfields) {
  int flags = 0;
  for (int i = 2; i < nfields; i++) {
    if (strcmp(fields[i], "--hostname") == 0) {
      i++;
    } else {
      int f = strcmp(fields[i], "net") == 0 ? CLONE_NEWNET : strcmp(fields[i], "ipc") == 0 ? CLONE_NEWIPC : strcmp(fields[i], "uts") == 0 ? CLONE_NEWUTS : -1;
      if (f < 0 || (flags & f)) return false;
      flags |= f;
    }
  }
  return flags == ALL_KINDS;
}

// Hands the request to the spare; its pid, with its stderr in *errfd. A spare that died early (its unshare failed)
// answers through its exit status and message like any child.
static pid_t use_spare(char **fields, int nfields, int *errfd) {
  for (int i = 1; i < nfields; i++) {
    const char *f = fields[i];
    size_t left = strlen(f) + 1;
    while (left > 0) {
      ssize_t n = write(spare.cmd, f, left);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break; // EPIPE: it is gone, its status tells why
      f += n;
      left -= (size_t)n;
    }
  }
  close(spare.cmd);
  pid_t pid = spare.pid;
  *errfd = spare.err;
  spare.pid = spare.cmd = spare.err = -1;
  return pid;
}

// Runs pod_ns in a spare or a forked child with its stderr on a pipe, and replies with its exit status and what it
// wrote.
static void handle(char **fields, int nfields) {
  const char *id = fields[0];
  char msg[MSG_MAX];
  int pipefd[2];
  pid_t pid;
  if (wants_spare(fields, nfields) && spare_alive()) {
    pid = use_spare(fields, nfields, &pipefd[0]);
    goto wait_child;
  }
  if (pipe2(pipefd, O_CLOEXEC) < 0) {
    snprintf(msg, sizeof(msg), "berth-pod-ns --serve: pipe: %s", strerror(errno));
    reply(id, 1, msg);
    return;
  }
  pid = fork();
  if (pid < 0) {
    snprintf(msg, sizeof(msg), "berth-pod-ns --serve: fork: %s", strerror(errno));
    close(pipefd[0]);
    close(pipefd[1]);
    reply(id, 1, msg);
    return;
  }
  if (pid == 0) {
    // A child stuck in the kernel (a hung mount) dies with a server berth killed for not replying.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    close(pipefd[0]);
    // Off berth's pipes: only the server talks to berth, and a stray child must not hold them open.
    if (dup2(pipefd[1], STDERR_FILENO) < 0 || dup2(devnull, STDIN_FILENO) < 0 || dup2(devnull, STDOUT_FILENO) < 0) _exit(1);
    close(pipefd[1]);
    close(devnull);
    if (spare.pid > 0) {
      close(spare.cmd);
      close(spare.err);
    }
    fields[0] = "berth-pod-ns"; // argv[0] in the one-shot argv
    _exit(pod_ns(nfields, fields, false));
  }
  close(pipefd[1]);
wait_child:;
  size_t len = 0;
  for (;;) {
    char scratch[512];
    bool room = len < sizeof(msg) - 1;
    ssize_t n = room ? read(pipefd[0], msg + len, sizeof(msg) - 1 - len) : read(pipefd[0], scratch, sizeof(scratch));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break; // EOF: the child exited (an error reading is reported by its status alone)
    if (room) len += (size_t)n;
  }
  msg[len] = '\0';
  close(pipefd[0]);
  int status;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) die("waitpid");
  }
  if (WIFSIGNALED(status)) {
    snprintf(msg + len, sizeof(msg) - len, "%skilled by signal %d", len > 0 ? " " : "", WTERMSIG(status));
    reply(id, 1, msg);
  } else {
    reply(id, WIFEXITED(status) ? WEXITSTATUS(status) : 1, msg);
  }
  if (spare.pid < 0) make_spare(); // after the reply: berth does not wait for it
}

// Splits one complete request (`len` bytes, ending with its empty field) into fields and handles it.
static void dispatch(char *req, size_t len) {
  char *fields[FIELDS_MAX + 1];
  int nfields = 0;
  bool too_many = false;
  for (size_t at = 0; at < len && req[at] != '\0'; at += strlen(req + at) + 1) {
    if (nfields == FIELDS_MAX) {
      too_many = true;
      break;
    }
    fields[nfields++] = req + at;
  }
  if (nfields == 0 || !readable_id(fields[0])) {
    errno = EPROTO;
    die("a request without a readable id");
  }
  if (too_many) {
    char msg[64];
    snprintf(msg, sizeof(msg), "berth-pod-ns --serve: more than %d fields in a request", FIELDS_MAX - 1);
    reply(fields[0], 2, msg);
    return;
  }
  fields[nfields] = NULL;
  handle(fields, nfields);
}

// Where the request starting at `buf` ends (just past its empty field), or 0 when `len` bytes do not hold all of it.
static size_t request_end(const char *buf, size_t len) {
  if (len > 0 && buf[0] == '\0') return 1; // an empty request, no id: dispatch refuses it
  for (size_t i = 1; i < len; i++) if (buf[i] == '\0' && buf[i - 1] == '\0') return i + 1;
  return 0;
}

static int serve(void) {
  pid_t parent = getppid();
  // Dies with berth; the check covers berth dying before the prctl.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) die("prctl");
  if (getppid() != parent) return 1;
  signal(SIGPIPE, SIG_IGN); // a closed stdout is a failed write, and then the server exits
  devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  if (devnull < 0) die("/dev/null");
  make_spare();
  static char buf[REQ_MAX];
  size_t len = 0;
  bool skipping = false; // discarding the rest of an oversize request
  char prev = 'x';       // the last byte discarded
  for (;;) {
    ssize_t n = read(STDIN_FILENO, buf + len, sizeof(buf) - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) die("reading requests");
    if (n == 0) {
      if (len == 0 && !skipping) return 0;
      errno = EPROTO;
      die("end of input inside a request");
    }
    len += (size_t)n;
    if (skipping) {
      size_t i = 0;
      for (; i < len && !(buf[i] == '\0' && prev == '\0'); i++) prev = buf[i];
      if (i == len) {
        len = 0;
        continue;
      }
      skipping = false;
      memmove(buf, buf + i + 1, len - i - 1);
      len -= i + 1;
    }
    size_t end;
    while ((end = request_end(buf, len)) > 0) {
      dispatch(buf, end);
      memmove(buf, buf + end, len - end);
      len -= end;
    }
    if (len == sizeof(buf)) {
      // Full without an end: reply if the id can be read, then drop bytes up to the request's empty field.
      char id[ID_MAX + 1];
      size_t idlen = strnlen(buf, sizeof(buf));
      if (idlen <= ID_MAX) memcpy(id, buf, idlen + 1);
      if (idlen > ID_MAX || !readable_id(id)) {
        errno = EMSGSIZE;
        die("an oversize request without a readable id");
      }
      char msg[64];
      snprintf(msg, sizeof(msg), "berth-pod-ns --serve: request larger than %d bytes", REQ_MAX);
      reply(id, 2, msg);
      skipping = true;
      prev = buf[len - 1];
      len = 0;
    }
  }
}

int main(int argc, char **argv) {
  if (argc == 2 && strcmp(argv[1], "--serve") == 0) return serve();
  return pod_ns(argc, argv, false);
}
