//! Flash messages: set in one request, shown and removed in the next.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;
use crate::ops::Op;
use crate::session::Session;

/// The session key flash messages are kept under. Keys starting with
/// `latchkey.` are the library's.
pub(crate) const FLASH_KEY: &str = "latchkey.flash";

/// How a flash message should be shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FlashLevel {
    /// Neutral information.
    Info,
    /// Something the user asked for worked.
    Success,
    /// Worth the user's attention.
    Warning,
    /// Something failed.
    Error,
}

/// One message for the next page the user sees; see [`Session::flash`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    /// How to show it.
    pub level: FlashLevel,
    /// What to show.
    pub message: String,
    /// Tells two flashes of the same text apart, so that consuming one never
    /// removes the other.
    #[serde(default)]
    id: u64,
}

/// A number for [`Flash::id`]: random per call, which is all telling flashes
/// apart needs.
fn flash_id() -> u64 {
    use std::hash::{BuildHasher as _, Hasher as _};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

impl Session {
    /// Keeps `message` for the next request that calls
    /// [`take_flashes`](Self::take_flashes), typically the page a form
    /// redirects to ("Your email was changed").
    ///
    /// Messages accumulate in order; one added while another request shows
    /// the earlier ones is kept for the request after.
    ///
    /// # Errors
    ///
    /// The limits of [`insert`](Self::insert) ([`Error::TooLarge`],
    /// [`Error::TooManyKeys`]), and [`Error::WrittenBack`] after the write-back.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::HttpResponse;
    /// use latchkey::{FlashLevel, Session};
    ///
    /// async fn save_settings(session: Session) -> Result<HttpResponse, latchkey::Error> {
    ///     session.flash(FlashLevel::Success, "Settings saved.")?;
    ///     Ok(HttpResponse::SeeOther().insert_header(("Location", "/settings")).finish())
    /// }
    /// # let _ = save_settings;
    /// ```
    pub fn flash(&self, level: FlashLevel, message: impl Into<String>) -> Result<(), Error> {
        let flash = Flash {
            level,
            message: message.into(),
            id: flash_id(),
        };
        self.apply(Op::update(
            FLASH_KEY.to_owned(),
            move |pending: Option<Vec<Flash>>| {
                let mut pending = pending.unwrap_or_default();
                pending.push(flash.clone());
                pending
            },
        ))?;
        Ok(())
    }

    /// The flash messages waiting, oldest first, removed from the session as
    /// they are returned.
    ///
    /// With none waiting this changes nothing, so a page that shows flashes on
    /// every visit costs no store write. Only the messages returned are
    /// removed: one another request adds meanwhile stays for the next call,
    /// also when its text is the same. Two requests that show flashes at the
    /// same time may both show the same ones.
    ///
    /// # Errors
    ///
    /// [`Error::Deserialize`] when the session's flash entry was not written by
    /// [`flash`](Self::flash) (the entry is left alone).
    ///
    /// # Examples
    ///
    /// ```
    /// async fn settings(session: latchkey::Session) -> Result<String, latchkey::Error> {
    ///     let notices: Vec<String> = session
    ///         .take_flashes()?
    ///         .into_iter()
    ///         .map(|flash| flash.message)
    ///         .collect();
    ///     Ok(notices.join("\n"))
    /// }
    /// # let _ = settings;
    /// ```
    pub fn take_flashes(&self) -> Result<Vec<Flash>, Error> {
        let Some(Value::Array(waiting)) = self.get_value(FLASH_KEY) else {
            if self.contains_key(FLASH_KEY) {
                return Err(not_flashes());
            }
            return Ok(Vec::new());
        };
        let flashes = waiting
            .iter()
            .map(|value| Flash::deserialize(value).map_err(|_| not_flashes()))
            .collect::<Result<Vec<_>, _>>()?;
        if !flashes.is_empty() {
            self.apply(Op::Consume(FLASH_KEY.to_owned(), waiting))?;
        }
        Ok(flashes)
    }
}

fn not_flashes() -> Error {
    Error::Deserialize {
        key: FLASH_KEY.to_owned(),
        source: serde::de::Error::custom("not a list of flash messages"),
    }
}
