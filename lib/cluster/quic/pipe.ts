/**
 * Joins a TCP socket and a QUIC stream: what one reads, the other writes, each way with
 * backpressure, until both sides have ended. An error on either side ends both (the native
 * transfer on the TCP side sees its connection reset and moves to its next source).
 */
import { once } from "node:events";
import type { Socket } from "node:net";
import type { QuicStream } from "../../ffi/quic.ts";

/** Copies both ways between `socket` and `stream`; resolves once both are done. Never rejects. */
export async function joinSocketAndStream(socket: Socket, stream: QuicStream): Promise<void> {
  // Small messages (the token's challenge, a chunk's header) go at once, not after an ACK.
  socket.setNoDelay(true);
  const writer = stream.writable.getWriter();
  const reader = stream.readable.getReader();
  let failed = false;
  const fail = () => {
    if (failed) return;
    failed = true;
    socket.destroy();
    void writer.abort().catch(() => {});
    void reader.cancel().catch(() => {});
  };
  const socketToStream = new Promise<void>((resolve) => {
    socket.on("data", (chunk: Uint8Array) => {
      socket.pause();
      writer.write(chunk).then(() => socket.resume(), fail);
    });
    socket.on("end", () => void writer.close().then(resolve, () => (fail(), resolve())));
    socket.on("close", () => (failed ? resolve() : undefined));
    socket.on("error", () => (fail(), resolve()));
  });
  socket.resume(); // a socket paused until the stream opened flows from here
  const streamToSocket = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!socket.write(value)) await Promise.race([once(socket, "drain"), once(socket, "close")]);
        if (socket.destroyed) throw new Error("socket closed");
      }
      socket.end();
    } catch {
      fail();
    }
  })();
  await Promise.all([socketToStream, streamToSocket]);
}
