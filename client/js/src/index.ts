// refstore for Node.js: see client.ts for the API and README.md ("From JavaScript").
export {
  Client,
  connect,
  Fulfiller,
  MAX_INLINE_BYTES,
  Ref,
  WriteBuffer,
  type ConnectOptions,
  type ObjectInfo,
  type Stats,
} from "./client.js";
export { RefstoreError, type ErrorCodeName } from "./errors.js";
export { defaultSocketPath } from "./socket_path.js";
