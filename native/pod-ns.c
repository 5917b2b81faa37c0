// berth-pod-ns: makes a pod's namespaces in one process, where util-linux took four (unshare, sh, hostname, ip: an
// exec costs milliseconds each on a busy node, and RunPodSandbox waits for all of them). Single-threaded, so
// unshare(2) moves the whole process.
//
//   berth-pod-ns <pin-dir> <net|ipc|uts>... [--hostname NAME]
//
// unshare()s the named namespaces and pins each by bind-mounting /proc/self/ns/<kind> onto <pin-dir>/<kind> (an
// empty file berth made), as `ip netns add` does; then sets the hostname in the new UTS namespace and raises
// loopback in the new network namespace. Exit 0 on success; 3 for a hostname hostname(1) would refuse; 1 for any
// other failure, the failing step on stderr. Pins made before a failure are the caller's to unmount.
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

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

int main(int argc, char **argv) {
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
  if (unshare(flags) < 0) return fail(1, "unshare", NULL);
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
  if ((flags & CLONE_NEWNET) && loopback_up() < 0) return fail(1, "bringing up loopback", NULL);
  return 0;
}
