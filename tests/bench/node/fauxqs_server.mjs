// fauxqs's SQS on loopback only: its own CLI listens on every interface.
// Prints FAUXQS_URL=<url> once listening; exits on SIGTERM/SIGINT or when stdin closes,
// so a parent that dies cannot leave it behind.
import { buildApp } from "fauxqs";

const app = buildApp({ logger: false });
const address = await app.listen({ host: "127.0.0.1", port: Number(process.env.FAUXQS_PORT ?? 0) });
process.stdout.write(`FAUXQS_URL=${address}\n`);

let closing = false;
async function shutdown() {
  if (closing) return;
  closing = true;
  await app.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
process.stdin.on("end", shutdown);
process.stdin.resume();
