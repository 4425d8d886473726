/**
 * Headless Chromium for the browser tests, driven through the Chrome DevTools Protocol over the
 * runtime's own WebSocket (Node 24, Deno and Bun all have one): no npm package. Debian's
 * `chromium` is installed by scripts/setup.sh (apt-get), or named by OBJSTORE_TEST_CHROMIUM.
 * Runs as root with --no-sandbox, in a profile folder of its own removed by `close()`.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import process from "node:process";

/** A page open in headless Chromium. */
export interface BrowserPage {
  /** The value of `expression` in the page (awaited if a promise; must be JSON). */
  evaluate<T>(expression: string): Promise<T>;
  /** Saves a PNG of the page, `fullPage` beyond the viewport too. */
  screenshot(file: string): Promise<void>;
  /** Ends Chromium and removes its profile folder. */
  close(): Promise<void>;
}

/** The Chromium binary, or a failure saying how to install it. */
export function chromiumPath(): string {
  const candidates = [process.env.OBJSTORE_TEST_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter((p): p is string => !!p);
  const found = candidates.find((p) => existsSync(p));
  if (found === undefined) {
    throw new Error("no Chromium for the browser tests: install Debian's with `apt-get install -y chromium` " +
      "(bash scripts/setup.sh does), or set OBJSTORE_TEST_CHROMIUM to a Chrome or Chromium binary");
  }
  return found;
}

/** Starts headless Chromium on `url`; resolves once the page's DevTools socket is open. */
export async function openPage(url: string, size = { width: 1280, height: 1400 }): Promise<BrowserPage> {
  const profile = mkdtempSync(path.join(tmpdir(), "objstore-chromium-"));
  const child = spawn(chromiumPath(), [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
    "--remote-debugging-port=0", `--user-data-dir=${profile}`, `--window-size=${size.width},${size.height}`, url,
  ], { stdio: ["ignore", "ignore", "pipe"], detached: true }); // a group of its own: its helper processes go with it
  let stderr = "";
  const gone = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const close = async () => {
    try {
      process.kill(-child.pid!, "SIGKILL"); // the browser and its renderer, GPU and zygote processes
    } catch { /* gone already */ }
    await gone;
    // A helper may still be writing into the profile as it dies: try again for a while.
    for (let attempt = 1; ; attempt++) {
      try {
        rmSync(profile, { recursive: true, force: true });
        return;
      } catch (error) {
        if (attempt === 50) throw error;
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    }
  };
  try {
    const browserUrl = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`Chromium printed no DevTools address within 20 s:\n${stderr}`)), 20_000);
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (chunk: string) => {
        stderr += chunk;
        const match = /DevTools listening on (ws:\/\/\S+)/.exec(stderr);
        if (match !== null) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.once("exit", (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`Chromium exited (${code ?? signal}) before it listened:\n${stderr}`));
      });
    });
    const port = new URL(browserUrl).port;
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json() as Array<{ type: string; webSocketDebuggerUrl: string }>;
    const target = targets.find((t) => t.type === "page");
    if (target === undefined) throw new Error(`Chromium has no page: ${JSON.stringify(targets)}`);
    const devtools = await connect(target.webSocketDebuggerUrl);
    return {
      async evaluate<T>(expression: string): Promise<T> {
        const result = await devtools.call("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true }) as {
          result: { value?: T };
          exceptionDetails?: { text: string; exception?: { description?: string } };
        };
        if (result.exceptionDetails !== undefined) {
          throw new Error(`in the page: ${result.exceptionDetails.exception?.description ?? result.exceptionDetails.text}`);
        }
        return result.result.value as T;
      },
      async screenshot(file: string): Promise<void> {
        const { data } = await devtools.call("Page.captureScreenshot", { format: "png", captureBeyondViewport: true }) as { data: string };
        writeFileSync(file, Buffer.from(data, "base64"));
      },
      async close(): Promise<void> {
        devtools.close();
        await close();
      },
    };
  } catch (error) {
    await close();
    throw error;
  }
}

/** A DevTools connection: numbered calls, answered in any order. */
async function connect(url: string): Promise<{ call(method: string, params: object): Promise<unknown>; close(): void }> {
  const socket = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    socket.addEventListener("open", () => resolve(), { once: true });
    socket.addEventListener("error", () => reject(new Error(`cannot connect to Chromium's DevTools at ${url}`)), { once: true });
  });
  let next = 1;
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (error: Error) => void }>();
  socket.addEventListener("message", (event) => {
    const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
    const waiter = message.id === undefined ? undefined : waiting.get(message.id);
    if (waiter === undefined) return;
    waiting.delete(message.id!);
    if (message.error !== undefined) waiter.reject(new Error(`DevTools: ${message.error.message}`));
    else waiter.resolve(message.result);
  });
  socket.addEventListener("close", () => {
    for (const waiter of waiting.values()) waiter.reject(new Error("Chromium's DevTools connection closed"));
    waiting.clear();
  });
  return {
    call(method, params) {
      const id = next++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiting.delete(id);
          reject(new Error(`DevTools ${method}: no answer within 15 s`));
        }, 15_000);
        waiting.set(id, {
          resolve: (value) => (clearTimeout(timer), resolve(value)),
          reject: (error) => (clearTimeout(timer), reject(error)),
        });
        socket.send(JSON.stringify({ id, method, params }));
      });
    },
    close() {
      socket.close();
    },
  };
}
