declare module 'elihu:job/types@0.1.0' {
  /**
   * What a run knows about the job it belongs to.
   */
  export interface JobInfo {
    /**
     * The job's id, unique within one elihu database.
     */
    id: bigint,
    /**
     * The name of the template the job was enqueued against.
     */
    template: string,
    /**
     * This attempt's number: 1 for the first run of the job, 2 for the
     * first retry, and so on.
     */
    attempt: number,
    /**
     * The number of attempts the job may make in all. When `attempt`
     * equals `max-attempts` this run is the last chance.
     */
    maxAttempts: number,
    /**
     * The state the latest earlier attempt of this job saved with
     * `host.checkpoint`, if any. A job that does long work in steps uses
     * it to resume where the previous attempt stopped.
     */
    checkpoint?: string,
  }
  /**
   * How important a log line is.
   * # Variants
   * 
   * ## `"trace"`
   * 
   * Very detailed tracing, usually off.
   * ## `"debug"`
   * 
   * Detail useful when debugging a job.
   * ## `"info"`
   * 
   * Normal progress of the job.
   * ## `"warn"`
   * 
   * Something unexpected that the job recovered from.
   * ## `"error"`
   * 
   * Something failed.
   */
  export type Level = 'trace' | 'debug' | 'info' | 'warn' | 'error';
}
