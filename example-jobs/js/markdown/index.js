// markdown: renders Markdown to HTML with the `markdown-it` library (bundled
// into the component at build time) and lists the document's headings.
import MarkdownIt from "markdown-it";
import { info, job, progress } from "elihu-guest";

export const run = job((ctx) => {
  const md = new MarkdownIt({ html: false, linkify: ctx.linkify ?? true, breaks: ctx.breaks ?? false });
  const env = {};
  const tokens = md.parse(ctx.markdown, env);
  const headings = [];
  tokens.forEach((token, i) => {
    if (token.type === "heading_open") {
      headings.push({ depth: Number(token.tag.slice(1)), text: tokens[i + 1].content });
    }
  });
  progress(50, `parsed ${tokens.length} tokens`);
  const html = md.renderer.render(tokens, md.options, env);
  const words = ctx.markdown.split(/\s+/).filter((w) => /\w/.test(w)).length;
  info(`rendered ${words} words, ${headings.length} headings, ${html.length} bytes of HTML`);
  return { html, headings, words };
});
