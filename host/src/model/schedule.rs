//! `CatchUp`: what a schedule does about firings missed while no node ran.

use serde::{Deserialize, Serialize};

/// What a schedule does about firings it missed while no node ran.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, sqlx::Type, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
#[sqlx(type_name = "text", rename_all = "lowercase")]
pub enum CatchUp {
    /// Run one catch-up job for all the missed firings, then go on.
    #[default]
    One,
    /// Drop missed firings and fire at the next instant.
    Skip,
}

impl CatchUp {
    /// The name as stored and written (`one`, `skip`).
    pub fn as_str(self) -> &'static str {
        match self {
            CatchUp::One => "one",
            CatchUp::Skip => "skip",
        }
    }

    /// Reads `one` or `skip`.
    pub fn parse(text: &str) -> Option<CatchUp> {
        match text {
            "one" => Some(CatchUp::One),
            "skip" => Some(CatchUp::Skip),
            _ => None,
        }
    }
}
