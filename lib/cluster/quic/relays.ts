/**
 * The puller's side of QUIC: the native pull (zig/src/transfer/Puller.zig) speaks TCP only, so
 * each source reached over QUIC gets a relay on this process's loopback. The pull connects to
 * the relay as to a node; the relay opens a stream of its QUIC connection to that node's
 * gateway (lib/cluster/quic/gateway.ts) and joins the two.
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Quic, QuicConnection, QuicStream } from "../../ffi/quic.ts";
import type { TransferAddress } from "../transfer.ts";
import { CERTIFICATE_SERVER_NAME } from "./certificate.ts";
import { QUIC_ALPN, QUIC_IDLE_TIMEOUT_MS, type QuicAddress } from "./gateway.ts";
import { joinSocketAndStream } from "./pipe.ts";

/** A source node as a relay needs it: where it is, and how it is reached over QUIC. */
export interface QuicSource {
  readonly host: string;
  readonly quic: QuicAddress;
}

interface Relay {
  readonly server: Server;
  readonly address: Promise<TransferAddress>;
  connection: Promise<QuicConnection> | undefined;
}

export class QuicRelays {
  readonly #quic: Quic;
  readonly #relays = new Map<string, Relay>();
  #closed = false;

  constructor(quic: Quic) {
    this.#quic = quic;
  }

  /** The loopback address that reaches `source` over QUIC (a relay made on first use). */
  addressFor(source: QuicSource): Promise<TransferAddress> {
    const key = keyOf(source);
    let relay = this.#relays.get(key);
    if (relay === undefined) {
      const opened = this.#open(source);
      this.#relays.set(key, opened);
      // A relay that could not listen is not kept: the next pull tries anew.
      opened.address.catch(() => this.#relays.get(key) === opened && this.#relays.delete(key));
      relay = opened;
    }
    return relay.address;
  }

  #open(source: QuicSource): Relay {
    const server = createServer({ noDelay: true });
    const relay: Relay = {
      server,
      connection: undefined,
      address: new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen({ host: "127.0.0.1", port: 0 }, () => resolve({ host: "127.0.0.1", port: (server.address() as { port: number }).port }));
      }),
    };
    // A relay waiting for pulls does not keep the program running.
    server.unref();
    server.on("connection", (socket: Socket) => void this.#forward(relay, source, socket));
    return relay;
  }

  async #forward(relay: Relay, source: QuicSource, socket: Socket): Promise<void> {
    socket.pause(); // until the stream is open: nothing read is lost
    try {
      await joinSocketAndStream(socket, await this.#openStream(relay, source));
    } catch {
      // The node is gone or refused the handshake: the pull sees its connection closed and
      // moves to its next source.
      socket.destroy();
    }
  }

  /**
   * A new stream to the relay's node, over the connection made on first use. A connection that
   * ended (the node restarted, or was silent past the idle timeout) is made again, once.
   */
  async #openStream(relay: Relay, source: QuicSource): Promise<QuicStream> {
    for (let attempt = 1; ; attempt++) {
      const connecting = this.#connection(relay, source);
      try {
        return await (await connecting).openStream();
      } catch (error) {
        if (relay.connection === connecting) relay.connection = undefined;
        if (attempt === 2) throw error;
      }
    }
  }

  #connection(relay: Relay, source: QuicSource): Promise<QuicConnection> {
    if (this.#closed) return Promise.reject(new Error("relays closed"));
    relay.connection ??= this.#quic.connect({
      host: source.host, port: source.quic.port, certificatePem: source.quic.certificatePem, serverName: CERTIFICATE_SERVER_NAME, alpn: QUIC_ALPN,
      idleTimeoutMs: QUIC_IDLE_TIMEOUT_MS,
    });
    return relay.connection;
  }

  /** Closes the relays of nodes not among `sources` (nodes that left or died). */
  keepOnly(sources: readonly QuicSource[]): void {
    const kept = new Set(sources.map(keyOf));
    for (const [key, relay] of this.#relays) {
      if (kept.has(key)) continue;
      this.#relays.delete(key);
      closeRelay(relay);
    }
  }

  /** Closes every relay and connection. */
  async close(): Promise<void> {
    this.#closed = true;
    for (const relay of this.#relays.values()) closeRelay(relay);
    this.#relays.clear();
  }
}

function keyOf(source: QuicSource): string {
  return `${source.host}:${source.quic.port}:${source.quic.certificatePem}`;
}

function closeRelay(relay: Relay): void {
  relay.server.close();
  void relay.connection?.then((connection) => connection.close(), () => {});
}
