/**
 * A node's QUIC entrance (`objstore start --transport quic`): each QUIC stream another node's
 * process opens is joined to a TCP connection to this node's own transfer server, which then
 * speaks with it exactly as with a puller over TCP: the token's challenge, then the chunks, each
 * checked by CRC32C. The bytes cross JavaScript here (one copy each way), which is what QUIC
 * costs against the native TCP path.
 */
import { connect } from "node:net";
import type { Quic, QuicServer, QuicStream } from "../../ffi/quic.ts";
import type { TransferAddress } from "../transfer.ts";
import { makeNodeCertificate } from "./certificate.ts";
import { joinSocketAndStream } from "./pipe.ts";

/** The protocol name both ends ask for in the QUIC handshake (ALPN). */
export const QUIC_ALPN = "objstore-transfer/1";

/**
 * How long a QUIC connection may stay silent (keep-alives included) before it is taken for
 * dead: UDP has no reset, so a pull from a node that died fails over after this long.
 */
export const QUIC_IDLE_TIMEOUT_MS = 3000;

/** How other nodes reach a node over QUIC: published with its record in the directory. */
export interface QuicAddress {
  /** The UDP port, on the node's host. */
  readonly port: number;
  /** The certificate the node presents (PEM); pullers trust it for that node alone. */
  readonly certificatePem: string;
}

/** At most one line per this long about dropped QUIC peers: a scanner of the UDP port would
 * otherwise fill the node's stderr. */
export const QUIC_DROP_REPORT_INTERVAL_MS = 10_000;

/**
 * A reporter of dropped QUIC peers for `QuicGateway.start`'s `onError`: prints the first drop,
 * then at most one line per `intervalMs`, counting the drops it did not print.
 */
export function dropReporter(print: (line: string) => void, intervalMs = QUIC_DROP_REPORT_INTERVAL_MS, now: () => number = Date.now): (error: unknown) => void {
  let printedMs = -Infinity;
  let unprinted = 0;
  return (error) => {
    if (now() - printedMs < intervalMs) {
      unprinted++;
      return;
    }
    const more = unprinted === 0 ? "" : ` (and ${unprinted} more since the last such line)`;
    print(`objstore: a QUIC peer was dropped: ${error instanceof Error ? error.message : error}${more}`);
    printedMs = now();
    unprinted = 0;
  };
}

export class QuicGateway {
  readonly address: QuicAddress;
  readonly #server: QuicServer;
  readonly #transferServer: TransferAddress;
  #streamsServed = 0;

  /**
   * Listens on UDP `host`:`port` (0: any free port) and joins each stream to the transfer
   * server at `transferServer`. Handshakes that fail are the peer's problem, reported to
   * `onError`.
   */
  static start(quic: Quic, host: string, port: number, transferServer: TransferAddress, onError: (error: unknown) => void): QuicGateway {
    return new QuicGateway(quic, host, port, transferServer, onError);
  }

  private constructor(quic: Quic, host: string, port: number, transferServer: TransferAddress, onError: (error: unknown) => void) {
    const { certificatePem, keyPem } = makeNodeCertificate();
    this.#transferServer = transferServer;
    this.#server = quic.listen({ host, port, certificatePem, keyPem, alpn: QUIC_ALPN, idleTimeoutMs: QUIC_IDLE_TIMEOUT_MS }, (stream) => this.#serve(stream), onError);
    this.address = { port: this.#server.port, certificatePem };
  }

  #serve(stream: QuicStream): void {
    this.#streamsServed++;
    // noDelay at connect: Deno's node:net ignores setNoDelay on a socket still connecting.
    const socket = connect({ host: this.#transferServer.host, port: this.#transferServer.port, noDelay: true });
    void joinSocketAndStream(socket, stream);
  }

  /** The streams opened to it so far (one per connection of a pull). */
  get streamsServed(): number {
    return this.#streamsServed;
  }

  /** Stops listening and drops every connection. */
  stop(): void {
    this.#server.close();
  }
}
