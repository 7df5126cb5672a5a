/* tsan_syscall: linked into the ThreadSanitizer binaries only (make tsan), never into
 * sluice itself.
 *
 * libuv closes every descriptor it owns (sockets, its eventfd, epoll) with
 * syscall(SYS_close, fd), which ThreadSanitizer does not intercept. TSan then believes
 * the descriptor is still open, and when the kernel hands the same number to another
 * thread (a log segment a scan opens, the spill file a checkpoint dup()s), it reports a
 * race between that thread and the socket's old reads: a false report that stops the
 * server under halt_on_error. This syscall() sends SYS_close through close(), which TSan
 * sees, and passes every other call to libc's. */
#include <dlfcn.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef long (*syscall_fn)(long, ...);
static syscall_fn real_syscall;

__attribute__((constructor)) static void find_real_syscall(void) {
  real_syscall = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
}

long syscall(long number, ...) {
  va_list ap;
  va_start(ap, number);
  long a[6];
  for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long); /* as libc's syscall reads them */
  va_end(ap);
  if (number == SYS_close) return close((int)a[0]);
  return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}
