//! The overview's throughput plot: succeeded and failed runs per minute over
//! the last hour as an inline SVG bar chart, drawn on the server (no
//! client-side charting; the page's CSP allows no inline styles, and SVG
//! presentation attributes need none).

use maud::{Markup, html};

use crate::store::MinuteCount;

const WIDTH: i64 = 720;
const HEIGHT: i64 = 140;
const BAR: i64 = WIDTH / 60;

/// Bars for the 60 minutes ending with `now_minute` (minutes since the epoch).
pub(crate) fn minutes(counts: &[MinuteCount], now_minute: i64) -> Markup {
    let first = now_minute - 59;
    let mut bars = [(0i64, 0i64); 60];
    for c in counts {
        if (first..=now_minute).contains(&c.minute) {
            bars[(c.minute - first) as usize] = (c.succeeded, c.failed);
        }
    }
    let top = bars.iter().map(|(s, f)| s + f).max().unwrap_or(0).max(1);
    let scale = |n: i64| n * (HEIGHT - 20) / top;
    let (succeeded, failed): (i64, i64) = bars.iter().fold((0, 0), |(a, b), (s, f)| (a + s, b + f));
    let label = format!("runs per minute over the last hour: {succeeded} succeeded, {failed} failed");
    html! {
        svg.plot #throughput role="img" aria-label=(label) viewBox={ "0 0 " (WIDTH) " " (HEIGHT + 16) } width=(WIDTH) height=(HEIGHT + 16) {
            line x1="0" y1=(HEIGHT) x2=(WIDTH) y2=(HEIGHT) stroke="#999" stroke-width="1" {}
            text x="0" y="12" font-size="11" fill="#555" { (top) " / min" }
            @for (i, (s, f)) in bars.iter().enumerate() {
                @let x = i as i64 * BAR;
                @let hf = scale(*f);
                @let hs = scale(*s);
                g {
                    title { (minute_label(i)) ": " (s) " succeeded, " (f) " failed" }
                    rect x=(x + 1) y=(HEIGHT - hf) width=(BAR - 2) height=(hf) fill="#c0392b" {}
                    rect x=(x + 1) y=(HEIGHT - hf - hs) width=(BAR - 2) height=(hs) fill="#27ae60" {}
                }
            }
            text x="0" y=(HEIGHT + 14) font-size="11" fill="#555" { "60 min ago" }
            text x=(WIDTH) y=(HEIGHT + 14) font-size="11" fill="#555" text-anchor="end" { "now" }
        }
    }
}

fn minute_label(i: usize) -> String {
    match 59 - i {
        0 => "this minute".to_string(),
        n => format!("{n} min ago"),
    }
}
