/// <reference path="./interfaces/elihu-job-host.d.ts" />
/// <reference path="./interfaces/elihu-job-types.d.ts" />
declare module 'elihu:job/job@0.1.0' {
  export type JobInfo = import('elihu:job/types@0.1.0').JobInfo;
  export type * as ElihuJobHost010 from 'elihu:job/host@0.1.0'; // import elihu:job/host@0.1.0
  export type * as ElihuJobTypes010 from 'elihu:job/types@0.1.0'; // import elihu:job/types@0.1.0
  /**
  * Runs the job once.
  * 
  * `context` is the job's context as JSON text; elihu has already
  * validated it against the JSON Schema of the job's template. `info`
  * describes the job and this attempt.
  * 
  * Return `ok` with the job's output as JSON text (it is stored with the
  * run), or `err` with a message saying why the job failed: elihu records
  * the run as failed with reason `error` and retries the job while it has
  * attempts left. A trap (a panic, `unreachable`, a stack overflow) also
  * fails the run, with reason `trap`.
  */
  export function run(context: string, info: JobInfo): string;
  export type Result<T, E> = { tag: 'ok', val: T } | { tag: 'err', val: E };
}
