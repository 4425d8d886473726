/**
 * `objstore dashboard`: a web page of a store (or a cluster) that updates itself once a second,
 * and the JSON API it reads, which scripts may read too (README "Dashboard"). Served with
 * node:http on every runtime; bound to loopback unless told otherwise, and then only with a
 * token, checked on every request.
 *
 *   GET /                      the page
 *   GET /api/memory            the store's figures now (`memoryStats()`'s) and the last minutes
 *   GET /api/objects?offset=&limit=&sort=&order=&filter=   one page of the objects, sorted and
 *                              filtered on the server
 *   GET /api/processes         drivers, workers and actors: pid, runtime, alive
 *   GET /api/tasks             task counts by state and the throughput of the last minutes
 *   GET /api/nodes             the nodes: a cluster's from its directory, or this machine
 */
import { timingSafeEqual } from "node:crypto";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { chartFiles } from "./chart_library.ts";
import { type DashboardSource, objectQuery } from "./dashboard_data.ts";
import { dashboardPage } from "./dashboard_page.ts";

/** How often the source is sampled (the page asks as often). */
export const SAMPLE_EVERY_MS = 1000;

export interface DashboardOptions {
  source: DashboardSource;
  /** Where to listen: 127.0.0.1 by default. */
  host: string;
  /** 0 for any free port. */
  port: number;
  /** Required of every request when set: `Authorization: Bearer <token>` or `?token=<token>`. */
  token: string | undefined;
}

/** True for an address only this machine reaches. */
export function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** A running dashboard: its URL (with the token, if any) and how to stop it. */
export class Dashboard {
  readonly #server: Server;
  readonly #source: DashboardSource;
  readonly #token: Uint8Array | undefined;
  readonly #timer: ReturnType<typeof setInterval>;
  #sampling: Promise<void> = Promise.resolve();
  url = "";

  private constructor(options: DashboardOptions) {
    this.#source = options.source;
    this.#token = options.token === undefined ? undefined : new TextEncoder().encode(options.token);
    this.#server = createServer((request, response) => {
      this.#handle(request, response).catch((error) => send(response, 500, { error: (error as Error).message }));
    });
    this.#timer = setInterval(() => this.#sample(), SAMPLE_EVERY_MS);
  }

  /** Samples once, then listens; the URL is set once listening. */
  static async start(options: DashboardOptions): Promise<Dashboard> {
    if (!isLoopback(options.host) && (options.token === undefined || options.token === "")) {
      throw new Error(`the dashboard listens on ${options.host}, beyond this machine: give it --token (every request must carry it)`);
    }
    const dashboard = new Dashboard(options);
    await dashboard.#sample();
    await new Promise<void>((resolve, reject) => {
      dashboard.#server.once("error", reject);
      dashboard.#server.listen(options.port, options.host, () => resolve());
    }).catch((error) => {
      clearInterval(dashboard.#timer);
      throw new Error(`cannot listen on ${options.host}:${options.port}: ${(error as Error).message}`);
    });
    const port = (dashboard.#server.address() as AddressInfo).port;
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    dashboard.url = `http://${host}:${port}/${options.token === undefined ? "" : `?token=${encodeURIComponent(options.token)}`}`;
    return dashboard;
  }

  #sample(): Promise<void> {
    this.#sampling = this.#sampling.then(() => this.#source.sample()).catch(() => { /* shown as the source's problem */ });
    return this.#sampling;
  }

  async #handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? "/", "http://dashboard");
    if (!this.#authorized(request, url)) return send(response, 401, { error: "this dashboard needs its token: ?token=… or Authorization: Bearer …" });
    if (request.method !== "GET") return send(response, 405, { error: `${request.method} is not served; only GET` });
    const source = this.#source;
    switch (url.pathname) {
      case "/":
        return sendText(response, "text/html; charset=utf-8", dashboardPage(source.title));
      case "/uplot.min.js":
        return sendText(response, "text/javascript; charset=utf-8", chartFiles()["/uplot.min.js"]);
      case "/uplot.min.css":
        return sendText(response, "text/css; charset=utf-8", chartFiles()["/uplot.min.css"]);
      case "/api/memory":
        return send(response, 200, { mode: source.mode, title: source.title, ...source.memory(), history: source.history });
      case "/api/objects": {
        let query;
        try {
          query = objectQuery(url.searchParams);
        } catch (error) {
          return send(response, 400, { error: (error as Error).message });
        }
        return send(response, 200, { ...query, ...(await source.objects(query)) });
      }
      case "/api/processes":
        return send(response, 200, { processes: source.processes() });
      case "/api/tasks":
        return send(response, 200, {
          sampledMs: source.memory().sampledMs,
          counts: source.tasks(),
          history: source.history.map((s) => ({ tMs: s.tMs, tasksPerS: s.tasksPerS })),
        });
      case "/api/nodes":
        return send(response, 200, { mode: source.mode, nodes: await source.nodes() });
      default:
        return send(response, 404, { error: `no ${url.pathname} here; see / and /api/{memory,objects,processes,tasks,nodes}` });
    }
  }

  #authorized(request: IncomingMessage, url: URL): boolean {
    if (this.#token === undefined) return true;
    const header = request.headers.authorization;
    const given = header?.startsWith("Bearer ") ? header.slice(7) : url.searchParams.get("token") ?? "";
    const bytes = new TextEncoder().encode(given);
    return bytes.length === this.#token.length && timingSafeEqual(bytes, this.#token);
  }

  /** Stops listening and sampling. */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    this.#server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await this.#sampling;
    await this.#source.close();
  }
}

function send(response: ServerResponse, status: number, body: unknown): void {
  if (response.headersSent) return void response.end();
  response.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store" });
  response.end(JSON.stringify(body));
}

function sendText(response: ServerResponse, type: string, text: string): void {
  response.writeHead(200, { "content-type": type, "cache-control": "no-store" });
  response.end(text);
}
