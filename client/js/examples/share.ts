// Puts its argument (or stdin) into refstored and prints a share token for it, good for 10
// minutes, that any process in any language can restore. The README's "From JavaScript" recipe.
import { readFileSync } from "node:fs";
import { connect } from "../src/index.js";

const bytes = process.argv[2] !== undefined ? Buffer.from(process.argv[2]) : readFileSync(0);
const client = await connect();  // $REFSTORE_SOCKET, or refstored's default socket
const ref = await client.put(bytes);
console.log(await ref.share(600));
await client.close();  // the token keeps the value alive; our own Ref goes with the connection
