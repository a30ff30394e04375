// refstore for Node.js: see client.ts for the API and README.md ("From JavaScript").
export { Client, connect, type ConnectOptions, type Stats } from "./client.js";
export { RefstoreError, type ErrorCodeName } from "./errors.js";
export { Fulfiller } from "./fulfiller.js";
export { type ObjectInfo, Ref } from "./ref.js";
export { defaultSocketPath } from "./socket_path.js";
export { MAX_INLINE_BYTES } from "./wire.js";
export { WriteBuffer } from "./write_buffer.js";
