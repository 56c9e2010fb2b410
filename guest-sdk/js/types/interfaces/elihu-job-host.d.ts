/// <reference path="./elihu-job-types.d.ts" />
declare module 'elihu:job/host@0.1.0' {
  /**
   * Appends a line to the run's log. Logs are stored with the run (capped
   * per run; lines past the cap are dropped and the log says so) and shown
   * live by `elihu run` and `elihu enqueue --wait`.
   */
  export function log(level: Level, message: string): void;
  /**
   * Reports how far the run has come. `percent` is clamped to 0..=100; the
   * latest report is stored with the run and streamed to watchers.
   */
  export function progress(percent: number, message: string): void;
  /**
   * Saves `state` (any string, typically JSON) as this job's checkpoint.
   * The latest checkpoint is stored with the run and handed to the next
   * attempt of the same job in `job-info.checkpoint`, so a job that fails
   * halfway can resume instead of starting over. Each call replaces the
   * previous checkpoint.
   */
  export function checkpoint(state: string): void;
  /**
   * Returns the configuration value named `key` that the job's template
   * sets, or `none` when the template has no such value. Configuration is
   * how a template hands a job settings that do not belong in every
   * context (an endpoint, a mode, a limit).
   */
  export function config(key: string): string | undefined;
  /**
   * Returns the value of the secret called `name` if the job's template
   * grants it to the job as readable, `none` otherwise (whether or not the
   * secret exists). Use it only where the job itself must hold the value
   * (a password in a line protocol); for HTTP prefer a header grant, which
   * the host adds without the job ever seeing the secret. Wherever the
   * value appears in the run's logs, stdout/stderr, progress, checkpoint,
   * output or error message, elihu stores `***` instead.
   */
  export function secret(name: string): string | undefined;
  /**
   * Ends this run now and asks elihu to run the job again once
   * `milliseconds` have passed: a "snooze", for a job that finds it cannot
   * proceed yet (a resource not ready, a downstream asking it to slow down)
   * without that being a failure.
   * 
   * The call does not return: elihu stops the guest at once (as a trap
   * would, so nothing after the call runs and no destructor runs), records
   * the run with result `snoozed`, and makes the job available again after
   * the delay. The attempt is given back: a snooze does not count towards
   * `max-attempts`, and the next run sees the same `attempt` number. The
   * latest checkpoint saved with `checkpoint` is kept for the next run, so
   * a job can count its own snoozes there.
   * 
   * Each node caps the snoozes of one job (`max_snoozes`, 100 by default):
   * the snooze past the cap fails the run with reason `snooze_limit` and
   * the job is over. A delay longer than 30 days fails the run with reason
   * `error`.
   */
  export function snooze(milliseconds: bigint): void;
  export type Level = import('elihu:job/types@0.1.0').Level;
}
