/**
 * Test-only: hosts in network namespaces of this machine, joined by a bridge, so a test can run
 * nodes that reach each other only over a network (a /24 of 198.18.0.0/15, the range set aside
 * for benchmarks: gateway .1, hosts .2, .3, …).
 * Needs root. Every name starts with the run's prefix (OBJSTORE_TEST_NETNS_PREFIX, set by
 * scripts/test.sh, whose trap removes what an interrupted run left) and this process's id;
 * `remove` deletes the namespaces (their veth ends go with them) and the bridge, and runs at
 * exit too.
 */
import { execFileSync } from "node:child_process";
import process from "node:process";

/** The prefix of every namespace and link of this test run (scripts/netns_cleanup.sh). */
export function runPrefix(): string {
  return process.env.OBJSTORE_TEST_NETNS_PREFIX ?? `osn${(process.pid % 65536).toString(16)}`;
}

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

export interface Host {
  /** The namespace's name, for `ip netns exec`. */
  namespace: string;
  address: string;
  /** The host side of its veth pair (where a rate limit goes). */
  link: string;
}

export class Network {
  readonly bridge: string;
  /** This network's /24 in 198.18.0.0/15, by process id: concurrent runs do not collide. */
  readonly #subnet = `198.${18 + ((process.pid >> 8) & 1)}.${process.pid & 255}`;
  /** The machine's own address on the bridge (a Redis for the hosts listens there). */
  readonly gateway = `${this.#subnet}.1`;
  readonly hosts: Host[] = [];
  #removed = false;
  readonly #atExit = () => this.remove();

  /** Makes a bridge and `count` hosts at .2, .3, … of this network's /24. */
  constructor(count: number) {
    const tag = `${runPrefix()}${(process.pid % 36 ** 3).toString(36)}`;
    this.bridge = `${tag}b`;
    process.on("exit", this.#atExit);
    try {
      ip("link", "add", this.bridge, "type", "bridge");
      ip("addr", "add", `${this.gateway}/24`, "dev", this.bridge);
      ip("link", "set", this.bridge, "up");
      for (let i = 0; i < count; i++) this.hosts.push(this.#addHost(tag, i));
    } catch (error) {
      this.remove();
      throw new Error(`cannot make test namespaces (root and iproute2 needed): ${(error as Error).message}`);
    }
  }

  #addHost(tag: string, i: number): Host {
    const namespace = `${tag}-${i}`;
    const link = `${tag}v${i}`;
    const address = `${this.#subnet}.${i + 2}`;
    ip("netns", "add", namespace);
    ip("link", "add", link, "type", "veth", "peer", "name", `${link}p`);
    ip("link", "set", `${link}p`, "netns", namespace);
    ip("link", "set", link, "master", this.bridge);
    ip("link", "set", link, "up");
    ip("-n", namespace, "addr", "add", `${address}/24`, "dev", `${link}p`);
    ip("-n", namespace, "link", "set", `${link}p`, "up");
    ip("-n", namespace, "link", "set", "lo", "up");
    return { namespace, address, link };
  }

  /**
   * Limits what `host` receives to `rate` (e.g. "400mbit") with tc on its link: netem, or a
   * token bucket (tbf) on kernels built without netem. Returns the qdisc used.
   */
  limitRate(host: Host, rate: string): "netem" | "tbf" {
    const tc = (...args: string[]) => execFileSync("tc", ["qdisc", "add", "dev", host.link, "root", ...args], { stdio: "pipe" });
    try {
      tc("netem", "rate", rate);
      return "netem";
    } catch {
      tc("tbf", "rate", rate, "burst", "256kb", "latency", "100ms");
      return "tbf";
    }
  }

  /** Takes `host`'s link down (the host is cut off: nothing reaches it, nothing leaves) or up. */
  setLink(host: Host, up: boolean): void {
    ip("link", "set", host.link, up ? "up" : "down");
  }

  /** The command line that runs `command` in `host`'s namespace. */
  within(host: Host, command: string, args: string[]): [string, string[]] {
    return ["ip", ["netns", "exec", host.namespace, command, ...args]];
  }

  /** Kills what runs in the namespaces, then removes them and the bridge. */
  remove(): void {
    if (this.#removed) return;
    this.#removed = true;
    process.off("exit", this.#atExit);
    for (const host of this.hosts) {
      try {
        const pids = ip("netns", "pids", host.namespace).split("\n").filter(Boolean);
        for (const pid of pids) process.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
      try {
        ip("netns", "del", host.namespace);
      } catch { /* gone */ }
    }
    try {
      ip("link", "del", this.bridge);
    } catch { /* never made */ }
  }
}
