/*
 * pause: the sandbox process of every pod on the test node. Waits until SIGTERM or SIGINT and reaps
 * any child that is re-parented to it (it is PID 1 of the pod's PID namespace when one is shared).
 * Built static (gcc -static) by test/infra/images/build.sh; no image is ever pulled for it.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>

static volatile sig_atomic_t stopping;

static void on_stop(int sig) { (void)sig; stopping = 1; }
static void on_child(int sig) { (void)sig; }

int main(void) {
  sigset_t wanted, previous;
  struct sigaction act = {0};

  sigemptyset(&wanted);
  sigaddset(&wanted, SIGTERM);
  sigaddset(&wanted, SIGINT);
  sigaddset(&wanted, SIGCHLD);
  /* blocked outside sigsuspend: a signal between the checks and the wait is not lost */
  sigprocmask(SIG_BLOCK, &wanted, &previous);

  act.sa_handler = on_stop;
  sigaction(SIGTERM, &act, NULL);
  sigaction(SIGINT, &act, NULL);
  act.sa_handler = on_child;
  sigaction(SIGCHLD, &act, NULL);

  for (;;) {
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    if (stopping) return 0;
    sigsuspend(&previous);
  }
}
