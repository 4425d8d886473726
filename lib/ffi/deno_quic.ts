/**
 * `Quic` (lib/ffi/quic.ts) over Deno's `Deno.QuicEndpoint` and `Deno.connectQuic`, present when
 * Deno runs with `--unstable-net`.
 */
import type { Quic, QuicConnection, QuicServer, QuicStream } from "./quic.ts";

// The unstable API, as far as it is used here (absent from Deno's stable types).
interface DenoQuicConn {
  createBidirectionalStream(): Promise<QuicStream>;
  readonly incomingBidirectionalStreams: ReadableStream<QuicStream>;
  close(info?: { closeCode: number; reason: string }): void;
}
interface DenoQuicIncoming {
  accept(): Promise<DenoQuicConn>;
}
interface DenoQuicEndpoint {
  readonly addr: { port: number };
  listen(options: { alpnProtocols: string[]; cert: string; key: string } & DenoQuicTimeouts): AsyncIterable<DenoQuicIncoming>;
  close(): void;
}
interface DenoQuicTimeouts {
  keepAliveInterval: number;
  maxIdleTimeout: number;
  congestionControl: "throughput";
}
/**
 * Keep-alives four times per idle timeout: a live but quiet peer is never dropped. Congestion
 * control for throughput: these connections carry objects (1.5x the default's rate measured
 * between two processes of this machine, 0.16 against 0.11 GB/s).
 */
function timeouts(idleTimeoutMs: number): DenoQuicTimeouts {
  return { keepAliveInterval: Math.max(1, Math.floor(idleTimeoutMs / 4)), maxIdleTimeout: idleTimeoutMs, congestionControl: "throughput" };
}
interface DenoQuicApi {
  QuicEndpoint: new (options: { hostname: string; port: number }) => DenoQuicEndpoint;
  connectQuic(options: { hostname: string; port: number; serverName: string; alpnProtocols: string[]; caCerts: string[] } & DenoQuicTimeouts): Promise<DenoQuicConn>;
}

/** Deno's QUIC, or undefined when Deno runs without `--unstable-net`. */
export function denoQuic(): Quic | undefined {
  const api = (globalThis as unknown as { Deno?: Partial<DenoQuicApi> }).Deno;
  if (typeof api?.QuicEndpoint !== "function" || typeof api.connectQuic !== "function") return undefined;
  return new DenoQuic(api as DenoQuicApi);
}

class DenoQuic implements Quic {
  readonly #api: DenoQuicApi;

  constructor(api: DenoQuicApi) {
    this.#api = api;
  }

  listen(
    options: { host: string; port: number; certificatePem: string; keyPem: string; alpn: string; idleTimeoutMs: number },
    onStream: (stream: QuicStream) => void,
    onError: (error: unknown) => void,
  ): QuicServer {
    const endpoint = new this.#api.QuicEndpoint({ hostname: options.host, port: options.port });
    const listener = endpoint.listen({
      alpnProtocols: [options.alpn], cert: options.certificatePem, key: options.keyPem, ...timeouts(options.idleTimeoutMs),
    });
    const connections = new Set<DenoQuicConn>();
    let closed = false;
    const serve = async (incoming: DenoQuicIncoming) => {
      const connection = await incoming.accept();
      connections.add(connection);
      try {
        for await (const stream of connection.incomingBidirectionalStreams) onStream(stream);
      } finally {
        connections.delete(connection);
      }
    };
    void (async () => {
      // Each connection is served on its own: one slow handshake must not hold the others.
      for await (const incoming of listener) void serve(incoming).catch((error) => closed || onError(error));
    })().catch((error) => closed || onError(error));
    return {
      port: endpoint.addr.port,
      close() {
        closed = true;
        for (const connection of connections) connection.close({ closeCode: 0, reason: "the node stops" });
        endpoint.close();
      },
    };
  }

  async connect(options: { host: string; port: number; certificatePem: string; serverName: string; alpn: string; idleTimeoutMs: number }): Promise<QuicConnection> {
    const connection = await this.#api.connectQuic({
      hostname: options.host, port: options.port, serverName: options.serverName, alpnProtocols: [options.alpn], caCerts: [options.certificatePem],
      ...timeouts(options.idleTimeoutMs),
    });
    // Not `connection.closed`: a promise of it keeps Deno running, and a program must end when
    // its own work does.
    return {
      openStream: () => connection.createBidirectionalStream(),
      close: () => connection.close({ closeCode: 0, reason: "done" }),
    };
  }
}
