// Runs before user code: builds `ctx` and checks what `transform` returns.
//
// Every ctx helper is implemented once, in Rust (src/transform/helpers.rs and lookups.rs),
// and shared with templates; the wrappers here only turn JavaScript values into its
// arguments (text, numbers, optional values), so the two languages cannot drift apart.
"use strict";
globalThis.__wharf = (() => {
  const host = globalThis.__wharf_host;
  delete globalThis.__wharf_host;
  let skipReason = null;
  // A value as log text: strings as they are, everything else as JSON where it has some.
  const text = (v) => {
    if (typeof v === "string") return v;
    if (v === undefined) return "undefined";
    if (v instanceof Error) return String(v);
    try { const s = JSON.stringify(v); return s === undefined ? String(v) : s; } catch (e) { return String(v); }
  };
  // A value as a field: missing values are empty, as in templates.
  const field = (v) => (v === null || v === undefined ? "" : typeof v === "object" ? text(v) : String(v));
  const optional = (v) => (v === null || v === undefined ? null : String(v));
  const fail = (name, message) => { const e = new Error(message); e.name = name; return e; };
  const maxOutputs = host.maxOutputs;
  const proto = {
    lookup(table, key, ...rest) {
      const v = host.lookup(String(table), field(key), rest.length > 0);
      return v === undefined ? rest[0] : v;
    },
    log(...args) { host.log(args.map(text).join(" ")); },
    skip(reason) { skipReason = host.skipReason(optional(reason)); return null; },
    formatDate(value, pattern, timeZone) {
      if (value instanceof Date) value = value.getTime();
      if (typeof value !== "string" && typeof value !== "number") throw new TypeError("a date must be a string, a number of milliseconds or a Date, not " + typeof value);
      return host.formatDate(value, field(pattern), field(timeZone));
    },
    parseDate(value, pattern, timeZone) { return host.parseDate(String(value), field(pattern), field(timeZone)); },
    money(value, places) { return host.money(String(value), places ?? null); },
    round(value, places) { return Number(host.money(String(value), places ?? null)); },
    // Widths go to Rust as numbers: a huge one is a clear error, not an allocation of that size.
    padStart(value, w, fill) { return host.pad("padStart", field(value), Number(w), optional(fill), "start"); },
    padEnd(value, w, fill) { return host.pad("padEnd", field(value), Number(w), optional(fill), "end"); },
    fixed(value, w, fill, align) { return host.pad("fixed", field(value), Number(w), optional(fill), align === "right" ? "right" : "left"); },
    csv(values) { return host.csv(Array.isArray(values) ? values.map(field) : [field(values)]); },
    xml(value) { return host.xml(field(value)); },
  };
  return {
    run(record, settings, job) {
      skipReason = null;
      const ctx = Object.create(proto);
      ctx.settings = JSON.parse(settings);
      ctx.job = JSON.parse(job);
      const out = transform(JSON.parse(record), ctx);
      if (out === null) return "\u0000skip:" + (skipReason ?? "the transformation returned null");
      if (out === undefined) throw fail("TransformError", "transform() returned undefined: return the output (an object or an array), or null to skip the record");
      if (typeof out === "function" || typeof out === "symbol" || typeof out === "bigint") throw fail("InvalidSchema", "transform() returned a " + typeof out + "; return an object, an array or null");
      // Counted before anything is copied out of the runtime.
      if (Array.isArray(out) && out.length > maxOutputs) throw fail("OutputTooLarge", "the record split into " + out.length + " outputs, over the limit of " + maxOutputs + " (transform.max_outputs)");
      return JSON.stringify(out);
    },
  };
})();
