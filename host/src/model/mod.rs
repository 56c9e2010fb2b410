//! The values every layer speaks: job and run ids, `Millis` (the one time
//! type), component digests, how a run ended (result, reason, ending), what a
//! run logged and reported, the calls it made, the bounds a guest meets
//! (the node's and a template's), how retries are spaced, what a schedule
//! does about missed firings, and a queue's rate limit and partition. No
//! I/O; imported by every other module, importing none of them (but
//! `units`, to write sizes and durations for people).

mod call;
mod digest;
mod ids;
mod limits;
mod queue;
mod run;
mod schedule;
mod time;

pub use call::Call;
pub use digest::{Digest, NotADigest};
pub use limits::{GuestLimits, LimitError, TemplateLimits};
pub use ids::{JobId, RunId};
pub use queue::{MAX_RATE_PERIOD, Partition, Rate};
pub use run::{Backoff, Ending, LogLevel, LogLine, Progress, Reason, RunResult};
pub use schedule::CatchUp;
pub use time::Millis;
