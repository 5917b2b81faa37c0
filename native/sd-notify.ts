// sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET. Node has no unix datagram sockets, so the
// socket calls go through libc.
import { libc, syscallError } from './libc';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;

/** Sends `state` (e.g. "READY=1") when NOTIFY_SOCKET is set; returns false when it is not. */
export function sdNotify(state: string, socketPath: string | undefined = process.env['NOTIFY_SOCKET']): boolean {
  if (!socketPath) return false;
  const lib = libc();
  const socket = lib.func('int socket(int, int, int)');
  const sendto = lib.func('long sendto(int, const void *, size_t, int, const void *, uint32_t)');
  const close = lib.func('int close(int)');
  // struct sockaddr_un: sa_family_t then the path; a leading '@' names the abstract namespace.
  const pathBytes = Buffer.from(socketPath.startsWith('@') ? `\0${socketPath.slice(1)}` : socketPath);
  if (pathBytes.length > 107) throw new Error(`NOTIFY_SOCKET path too long: ${socketPath}`);
  const addr = Buffer.alloc(2 + pathBytes.length + 1);
  addr.writeUInt16LE(AF_UNIX, 0);
  pathBytes.copy(addr, 2);
  const addrLen = socketPath.startsWith('@') ? 2 + pathBytes.length : addr.length;
  const fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) throw syscallError('socket');
  try {
    const msg = Buffer.from(state);
    const sent = sendto(fd, msg, msg.length, 0, addr, addrLen) as number;
    if (sent < 0) throw syscallError('sendto', socketPath);
  } finally {
    close(fd);
  }
  return true;
}
