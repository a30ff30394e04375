// The default rendezvous socket, as refstored, refctl and the C++ client choose it
// (schema/socket_path.c++): $REFSTORE_SOCKET, else $XDG_RUNTIME_DIR/refstored.sock, else
// /tmp/refstore-<uid>/refstored.sock.
import * as os from "node:os";

export function defaultSocketPath(): string {
  const explicit = process.env.REFSTORE_SOCKET;
  if (explicit) return explicit;
  const runtime = process.env.XDG_RUNTIME_DIR;
  if (runtime) return `${runtime}/refstored.sock`;
  return `/tmp/refstore-${os.userInfo().uid}/refstored.sock`;
}
