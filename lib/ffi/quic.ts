/**
 * QUIC as the cluster uses it, for runtimes that have it: today Deno run with `--unstable-net`
 * (`Deno.QuicEndpoint`); Node 24 and Bun have none. Each runtime's shim gives an implementation
 * or `undefined` (lib/ffi/symbols.ts `RuntimeShim.quic`).
 */

/** One bidirectional QUIC stream, as web streams. */
export interface QuicStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
}

/** A client's connection to one QUIC server. */
export interface QuicConnection {
  /** Rejects once the connection has ended (the peer died or closed it). */
  openStream(): Promise<QuicStream>;
  close(): void;
}

/** A listening QUIC endpoint. */
export interface QuicServer {
  /** The UDP port it listens on (the one chosen when 0 was asked). */
  readonly port: number;
  close(): void;
}

export interface Quic {
  /**
   * Listens on UDP `host`:`port` presenting `certificatePem` (with its key), for clients that ask
   * for protocol `alpn`; calls `onStream` for each stream a client opens. A client that fails
   * the handshake is dropped and reported to `onError`.
   */
  listen(
    options: { host: string; port: number; certificatePem: string; keyPem: string; alpn: string; idleTimeoutMs: number },
    onStream: (stream: QuicStream) => void,
    onError: (error: unknown) => void,
  ): QuicServer;
  /**
   * Connects to `host`:`port`, trusting only `certificatePem` for `serverName`. Both ends send
   * keep-alives and drop a connection silent for `idleTimeoutMs`: UDP has no reset, so that is
   * how a peer that died is noticed.
   */
  connect(options: { host: string; port: number; certificatePem: string; serverName: string; alpn: string; idleTimeoutMs: number }): Promise<QuicConnection>;
}

/** What to tell a user who asked for QUIC where there is none. */
export const QUIC_UNAVAILABLE = "QUIC is available on Deno run with --unstable-net only (Node 24 and Bun have no QUIC); " +
  "run the node with `deno run -A --unstable-net`, or leave out --transport quic: TCP works on every runtime";
