// webhook: POSTs its context as JSON to the URL its template's `url` config
// value names and returns the response's status. The bearer token: when the
// template's `token_secret` config value names a secret it grants as
// readable, the job reads it with `secret` and sends it; otherwise a header
// grant on the template adds it and the job never holds it. A status of 400
// or more fails the run, so the job is retried.
import { config, fetch, info, job, secret } from "elihu-guest";

export const run = job(async (ctx) => {
  const url = config("url");
  if (url === undefined) throw new Error("the template sets no `url` config value (elihu template push --config url=...)");
  const headers = { "content-type": "application/json" };
  const name = config("token_secret");
  if (name !== undefined) {
    const token = secret(name);
    if (token === undefined) throw new Error(`the template grants no readable secret \`${name}\``);
    headers.authorization = `Bearer ${token}`;
  }
  const response = await fetch(url, { method: "POST", headers, body: JSON.stringify(ctx) });
  await response.arrayBuffer();
  info(`POST ${url}: ${response.status}`);
  if (response.status >= 400) throw new Error(`${url} answered ${response.status}`);
  return { status: response.status };
});
