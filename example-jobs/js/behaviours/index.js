// behaviours: one component showing each way a run can go, chosen by the
// context's `mode` (one component rather than five keeps builds short: each
// JavaScript component carries the whole engine).
//
// - flaky:    fails its first `fail_times` attempts (reason `error`), then succeeds
// - throw:    a bug (reads a property of undefined): the run fails with the
//             exception's class and message, and its stack is logged
// - spin:     loops forever; only a timeout or a cancel ends it
// - memory:   allocates `chunk_mib` MiB at a time until the memory limit stops it
// - progress: works through `steps`, reporting progress and saving a checkpoint
//             after each; the first attempt fails after `fail_after` steps and
//             the next one resumes from the checkpoint
// - snooze:   snoozes `times` times, `seconds` each, counting in its
//             checkpoint, then succeeds (on the same attempt)
import { checkpoint, info, job, progress, snooze, warn } from "elihu-guest";

const modes = {
  flaky(ctx, job) {
    if (job.attempt <= ctx.fail_times) {
      warn(`attempt ${job.attempt} fails on purpose`);
      throw new Error(`failing on purpose: attempt ${job.attempt} of the ${ctx.fail_times} planned failures`);
    }
    return { attempt: job.attempt, max_attempts: job.maxAttempts };
  },

  throw(ctx) {
    info("about to read a property of undefined");
    const missing = ctx.missing;
    return missing.property;
  },

  spin() {
    info("spinning forever");
    let n = 0;
    for (;;) n = (n + 1) | 0;
  },

  memory(ctx) {
    const mib = ctx.chunk_mib ?? 1;
    const held = [];
    for (;;) {
      held.push(new Uint8Array(mib << 20).fill(0xa5));
      if (held.length % 16 === 0) info(`holding ${held.length * mib} MiB`);
    }
  },

  progress(ctx, job) {
    const resumedFrom = job.checkpoint?.done ?? 0;
    if (resumedFrom > 0) info(`resuming after step ${resumedFrom}`);
    for (let done = resumedFrom + 1; done <= ctx.steps; done++) {
      progress(Math.floor((done * 100) / ctx.steps), `step ${done} of ${ctx.steps}`);
      checkpoint({ done });
      if (job.attempt === 1 && ctx.fail_after === done) {
        throw new Error(`stopping after step ${done} on purpose`);
      }
    }
    return { attempt: job.attempt, resumed_from: resumedFrom, steps: ctx.steps };
  },

  snooze(ctx, job) {
    const snoozed = job.checkpoint ?? 0;
    if (snoozed < ctx.times) {
      checkpoint(snoozed + 1);
      info(`snooze ${snoozed + 1} of ${ctx.times}: back in ${ctx.seconds} s`);
      snooze(ctx.seconds);
    }
    return { snoozed, attempt: job.attempt };
  },
};

export const run = job((ctx, job) => modes[ctx.mode](ctx, job));
