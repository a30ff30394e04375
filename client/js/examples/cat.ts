// Restores a share token and writes the value to stdout.
import { connect } from "../src/index.js";

const client = await connect();
const ref = await client.restore(process.argv[2]);
process.stdout.write(await ref.read());
await ref.release();  // frees our hold now (closing the client would too)
await client.close();
