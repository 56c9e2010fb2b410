// hello: greets a name from the context; reads the `greeting` config value.
// The smallest useful job, and the one `elihu bench --job js` runs.
import { config, info, job } from "elihu-guest";

export const run = job((ctx, job) => {
  info(`greeting ${ctx.name} (job ${job.id}, attempt ${job.attempt})`);
  const word = config("greeting") ?? "Hello";
  return { greeting: `${word}, ${ctx.name}!` };
});
