// Cap'n Proto's Release message, which capnp-es never sends (its capabilities' close() is
// empty), so that the daemon also drops its side of a capability this client is done with.
// Without it every Ref, WriteBuffer and Fulfiller a connection ever received would stay in the
// daemon's export table (and in capnp-es's import table) until the connection closed: about a
// hundred bytes each in the daemon, without bound for a long-running process.
//
// Releasing a WriteBuffer before `seal` aborts its object (what dropping it does in C++); after
// `seal`, `fulfill` or `Ref.release` the capability is useless and releasing it only frees its
// entry. The import is marked closed first, so capnp-es refuses later calls on it locally: the
// daemon may reuse its id for another capability.
import * as $ from "capnp-es";
import { Message as RpcMessage } from "capnp-es/capnp/rpc";

interface ImportClient {
  conn: unknown;
  id: number;
  closed: boolean;
}
interface ImportEntry {
  rc: { _client: unknown };
  refs: number;
}

/** The capnp-es import behind a capability received from the daemon, if it is one. */
function importOf(conn: $.Conn, capability: $.Client): ImportClient | undefined {
  let client: unknown = capability;
  // capnp-es wraps imports in reference-counting `Ref`s (not ours), each with client().
  for (let depth = 0; depth < 4 && client !== null && typeof client === "object"; depth++) {
    const candidate = client as Partial<ImportClient> & { client?: () => unknown };
    if (candidate.conn === conn && typeof candidate.id === "number" && "closed" in candidate) {
      return candidate as ImportClient;
    }
    if (typeof candidate.client !== "function") return undefined;
    client = candidate.client();
  }
  return undefined;
}

/** Sends Release for every reference this connection holds to `capability`'s import. */
export function releaseCapability(conn: $.Conn, capability: $.Client): void {
  const imported = importOf(conn, capability);
  if (imported === undefined || imported.closed) return;
  imported.closed = true;
  const imports = (conn as unknown as { imports: Record<number, ImportEntry | undefined> }).imports;
  const entry = imports[imported.id];
  if (entry === undefined || entry.rc._client !== imported) return;
  delete imports[imported.id];
  const message = new $.Message().initRoot(RpcMessage);
  const release = message._initRelease();
  release.id = imported.id;
  release.referenceCount = entry.refs;
  try {
    conn.sendMessage(message);
  } catch {
    // Disconnected: the daemon has dropped everything of this connection already.
  }
}
