/**
 * Functions shipped to workers by their source: remote functions, and the classes and
 * functions of custom serializers.
 */

/** Any function (what `remote` and `registerSerializer` ship). */
// deno-lint-ignore no-explicit-any
type ShippableFunction = (...args: any[]) => any;

/** Source that evaluates to the function, also for method shorthand (`f(x) { … }`). */
export function sourceOf(fn: ShippableFunction): string {
  const source = Function.prototype.toString.call(fn);
  if (source.includes("[native code]")) throw new TypeError(`remote: ${fn.name || "this function"} is built in; wrap it in a function of your own`);
  if (parses(source)) return source;
  const asFunction = source.replace(/^(async\s+)?(\*?)\s*/, (_, asyncPart = "", star) => `${asyncPart}function${star} `);
  if (parses(asFunction)) return asFunction;
  throw new TypeError(`remote: cannot ship ${fn.name || "this function"} by its source; define it as a function or arrow function`);
}

/** Parses (without running) source as an expression. */
function parses(source: string): boolean {
  try {
    new Function(`"use strict"; return (${source});`);
    return true;
  } catch {
    return false;
  }
}
