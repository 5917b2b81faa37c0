// pause: holds a pod's namespaces open and, as PID 1 of the pod's PID namespace, reaps the orphans re-parented
// to it. Sleeps until SIGINT or SIGTERM, then exits 0. Built static (native/build.sh) so it runs in any rootfs.
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void reap(int sig) {
  (void)sig;
  int saved = errno; // a handler must not clobber errno for the code it interrupted
  while (waitpid(-1, NULL, WNOHANG) > 0) {
  }
  errno = saved;
}

static void shutdown_now(int sig) {
  (void)sig;
  _exit(0);
}

static int on(int sig, void (*handler)(int), int flags) {
  struct sigaction sa = {0};
  sa.sa_handler = handler;
  sa.sa_flags = flags;
  sigemptyset(&sa.sa_mask);
  return sigaction(sig, &sa, NULL);
}

int main(void) {
  // PID 1 of a namespace gets no default signal actions: without these handlers SIGTERM would be ignored.
  if (on(SIGINT, shutdown_now, 0) < 0 || on(SIGTERM, shutdown_now, 0) < 0 ||
      on(SIGCHLD, reap, SA_RESTART | SA_NOCLDSTOP) < 0) {
    return 1;
  }
  reap(SIGCHLD); // children that exited before the handler was installed
  for (;;) pause();
}
