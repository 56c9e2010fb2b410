// Declarations of elihu-guest's API. The world's own declarations (the
// `elihu:job/...` modules the SDK imports) are generated from wit/job.wit by
// `npm run types` (jco guest-types) into types/.
/// <reference path="./types/job.d.ts" />

import type { Level } from "elihu:job/types@0.1.0";

export type { Level };

/** The log levels of the job world, lowest first. */
export const LEVELS: readonly Level[];

/** What a run knows about its job and this attempt. */
export class JobInfo {
  private constructor();
  /** The job's id (a number: ids stay far below 2^53). */
  readonly id: number;
  /** The name of the template the job was enqueued against. */
  readonly template: string;
  /** This attempt's number, starting at 1. */
  readonly attempt: number;
  /** How many attempts the job may make in all. */
  readonly maxAttempts: number;
  /** The checkpoint an earlier attempt saved, as stored (or `undefined`). */
  readonly rawCheckpoint: string | undefined;
  /** Whether this is the job's last attempt: a failure now is final. */
  readonly isLastAttempt: boolean;
  /**
   * The checkpoint an earlier attempt saved with `checkpoint(state)`, parsed
   * (`undefined` when there is none). Throws when the stored text is not JSON.
   */
  readonly checkpoint: unknown;
}

/** The `run` export `job(fn)` returns; export it as `run`. */
export type RunExport = (context: string, info: import("elihu:job/types@0.1.0").JobInfo) => string | Promise<string>;

/**
 * Turns `fn(context, job)` into the job's `run` export:
 * `export const run = job((ctx, job) => ({ ... }))`.
 * `fn` may be async. What it returns is stored as JSON (`undefined` gives
 * `null`). A thrown `Error` or string fails the run (reason `error`) with its
 * message; any other exception fails it with `Name: message` and logs its stack.
 */
export function job<C = any, O = unknown>(fn: (context: C, job: JobInfo) => O | Promise<O>): RunExport;

/** Appends a line to the run's log; `parts` are joined with spaces, non-strings shown as JSON. */
export function log(level: Level, ...parts: unknown[]): void;
/** Logs a line at `trace` level. */
export function trace(...parts: unknown[]): void;
/** Logs a line at `debug` level. */
export function debug(...parts: unknown[]): void;
/** Logs a line at `info` level. */
export function info(...parts: unknown[]): void;
/** Logs a line at `warn` level. */
export function warn(...parts: unknown[]): void;
/** Logs a line at `error` level. */
export function error(...parts: unknown[]): void;

/** Reports how far the run has come: `percent` is rounded and clamped to 0..100. */
export function progress(percent: number, message?: string): void;

/**
 * Saves `state` as the job's checkpoint; the next attempt of the same job
 * receives it parsed in `job.checkpoint`. Each call replaces the previous one.
 */
export function checkpoint(state: unknown): void;

/** The configuration value `key` set on the job's template, or `undefined`. */
export function config(key: string): string | undefined;

/**
 * The value of the secret `name` if the job's template grants it as
 * readable, else `undefined`. For HTTP prefer a header grant on the
 * template: the host adds the header and the job never holds the value.
 */
export function secret(name: string): string | undefined;

/**
 * The standard `fetch`, sent through wasi:http: only hosts the template
 * grants are reachable (any other request rejects, and the run's log names
 * the refused URL); every call is in the run's audit.
 */
export const fetch: typeof globalThis.fetch;

/**
 * Ends this run now and asks elihu to run the job again after `seconds`
 * (rounded up to whole milliseconds); it does not return. The run is
 * recorded as `snoozed` and the attempt is given back (the next run sees the
 * same `job.attempt` and the latest checkpoint). A node caps the snoozes of
 * one job (`max_snoozes`): past it the run fails with reason `snooze_limit`.
 */
export function snooze(seconds: number): never;
