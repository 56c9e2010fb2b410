// elihu-guest: write elihu jobs in JavaScript.
//
// A job is a function from a context to an output. `job(fn)` turns it into
// the `run` export of elihu's `job` world (wit/job.wit): the SDK parses the
// context JSON, calls `fn(context, job)`, awaits it if it returns a promise,
// and serialises what it returns as JSON. A thrown exception fails the run
// (reason `error`) with its message. Build the module into a component with
// `elihu-guest-build` (this package's bin), which bundles it with esbuild and
// componentizes it with componentize-js.
//
// While it runs a job can log (`info`, `warn`, ... or `log(level, ...)`),
// report `progress`, save a `checkpoint` that the next attempt receives
// parsed in `job.checkpoint`, read `config` values set on its template and
// the `secret`s it grants as readable, call the hosts it grants with
// `fetch` (the standard one, over wasi:http), and `snooze`: end the run and
// run again later without using an attempt.

import * as host from "elihu:job/host@0.1.0";

/** The log levels of the job world, lowest first. */
export const LEVELS = Object.freeze(["trace", "debug", "info", "warn", "error"]);

/** What a run knows about its job and this attempt. */
export class JobInfo {
  /** @param {import("elihu:job/types@0.1.0").JobInfo} raw */
  constructor(raw) {
    /** The job's id (a number: ids stay far below 2^53). */
    this.id = Number(raw.id);
    /** The name of the template the job was enqueued against. */
    this.template = raw.template;
    /** This attempt's number, starting at 1. */
    this.attempt = raw.attempt;
    /** How many attempts the job may make in all. */
    this.maxAttempts = raw.maxAttempts;
    /** The checkpoint an earlier attempt saved, as the text it was stored as (or `undefined`). */
    this.rawCheckpoint = raw.checkpoint ?? undefined;
  }

  /** Whether this is the job's last attempt: a failure now is final. */
  get isLastAttempt() {
    return this.attempt >= this.maxAttempts;
  }

  /**
   * The checkpoint an earlier attempt saved with `checkpoint(state)`, parsed
   * (`undefined` when there is none). Throws when the stored text is not
   * JSON (another writer saved it).
   */
  get checkpoint() {
    if (this.rawCheckpoint === undefined) return undefined;
    try {
      return JSON.parse(this.rawCheckpoint);
    } catch (e) {
      throw new Error(`the checkpoint is not JSON (${e.message}): ${this.rawCheckpoint.slice(0, 200)}`);
    }
  }
}

/**
 * Turns `fn(context, job)` into the job's `run` export:
 * `export const run = job((ctx, job) => ({ ... }))`.
 * `fn` may be async. What it returns is stored as JSON (`undefined` gives
 * `null`); what it throws fails the run with reason `error`.
 */
export function job(fn) {
  if (typeof fn !== "function") {
    throw new TypeError("job(fn) takes the job's function: job((context, job) => output)");
  }
  return function run(context, raw) {
    let output;
    try {
      const info = new JobInfo(raw);
      let parsed;
      try {
        parsed = JSON.parse(context);
      } catch (e) {
        throw new Error(`the context is not JSON: ${e.message}`);
      }
      output = fn(parsed, info);
    } catch (e) {
      throw failure(e);
    }
    // Synchronous jobs return synchronously; a promise is awaited.
    if (output !== null && typeof output === "object" && typeof output.then === "function") {
      return output.then(serialise, (e) => {
        throw failure(e);
      });
    }
    return serialise(output);
  };
}

function serialise(output) {
  let text;
  try {
    text = JSON.stringify(output === undefined ? null : output);
  } catch (e) {
    throw `the job's output is not JSON: ${e.message}`;
  }
  if (text === undefined) {
    throw `the job's output is not JSON: it returned a ${typeof output}`;
  }
  return text;
}

/**
 * The run's error message for something thrown. A plain `Error` (or a
 * string) is the job saying why it failed: its message is the reason. Any
 * other exception (a `TypeError`, a custom class) is most likely a bug: the
 * message names its class and its stack is logged at `error` level.
 */
function failure(e) {
  if (typeof e === "string") return e;
  if (e instanceof Error) {
    if (e.constructor === Error) return e.message;
    if (e.stack) host.log("error", `${e.name}: ${e.message}\n${e.stack}`.trimEnd());
    return `${e.name}: ${e.message}`;
  }
  return format(e);
}

function format(part) {
  if (typeof part === "string") return part;
  if (part instanceof Error) return part.stack ? `${part}\n${part.stack}`.trimEnd() : String(part);
  if (part === undefined || typeof part === "function" || typeof part === "symbol") return String(part);
  try {
    return JSON.stringify(part, (_, v) => (typeof v === "bigint" ? v.toString() : v));
  } catch {
    return String(part);
  }
}

/**
 * Appends a line to the run's log (stored with the run, streamed live).
 * `parts` are joined with spaces; non-strings are shown as JSON.
 */
export function log(level, ...parts) {
  if (!LEVELS.includes(level)) {
    throw new TypeError(`unknown log level ${format(level)}; use one of ${LEVELS.join(", ")}`);
  }
  host.log(level, parts.map(format).join(" "));
}

/** Logs a line at `trace` level. */
export const trace = (...parts) => log("trace", ...parts);
/** Logs a line at `debug` level. */
export const debug = (...parts) => log("debug", ...parts);
/** Logs a line at `info` level. */
export const info = (...parts) => log("info", ...parts);
/** Logs a line at `warn` level. */
export const warn = (...parts) => log("warn", ...parts);
/** Logs a line at `error` level. */
export const error = (...parts) => log("error", ...parts);

/** Reports how far the run has come: `percent` is rounded and clamped to 0..100. */
export function progress(percent, message = "") {
  const p = Math.min(100, Math.max(0, Math.round(Number(percent) || 0)));
  host.progress(p, String(message));
}

/**
 * Saves `state` (anything `JSON.stringify` takes) as the job's checkpoint;
 * the next attempt of the same job receives it parsed in `job.checkpoint`.
 * Each call replaces the previous checkpoint.
 */
export function checkpoint(state) {
  const text = JSON.stringify(state);
  if (text === undefined) {
    throw new TypeError(`a checkpoint must be JSON; got a ${typeof state}`);
  }
  host.checkpoint(text);
}

/** The configuration value `key` set on the job's template, or `undefined`. */
export function config(key) {
  return host.config(String(key)) ?? undefined;
}

/**
 * The value of the secret `name` if the job's template grants it as
 * readable, else `undefined` (whether or not the secret exists). For HTTP
 * prefer a header grant on the template: the host adds the header and the
 * job never holds the value. elihu stores `***` wherever the value shows
 * up in the run's logs, output, error, progress or checkpoint.
 */
export function secret(name) {
  return host.secret(String(name)) ?? undefined;
}

/**
 * The standard `fetch`, sent through wasi:http: only hosts the template
 * grants are reachable (any other request rejects, and the run's log names
 * the refused URL); headers a grant adds can be neither set nor read; every
 * call is in the run's audit. Await it: `job(async (ctx) => ...)`.
 */
export function fetch(input, init) {
  return globalThis.fetch(input, init);
}

/**
 * Ends this run now and asks elihu to run the job again after `seconds`
 * (rounded up to whole milliseconds). It does not return: the host stops the
 * guest at once, so nothing after the call runs (no `finally` either). The
 * run is recorded as `snoozed`; the attempt is given back, so the next run
 * sees the same `job.attempt`, and the latest `checkpoint` is handed to it,
 * which is where a job keeps count of its own snoozes. A node caps the
 * snoozes of one job (`max_snoozes`, 100 by default): the snooze past the cap
 * fails the run with reason `snooze_limit`. A delay over 30 days fails the
 * run with reason `error`.
 */
export function snooze(seconds) {
  const s = Number(seconds);
  if (!Number.isFinite(s) || s < 0) {
    throw new RangeError(`snooze(seconds) takes a number of seconds, 0 or more; got ${format(seconds)}`);
  }
  host.snooze(BigInt(Math.ceil(s * 1000)));
  throw new Error("the host ends the run at a snooze");
}
