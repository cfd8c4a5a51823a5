//! What a session records about the device it was created on: a user agent
//! and a client address, within the limits the application sets.
//!
//! The description is taken from the request that stores a new session (or
//! logs in) and kept in the session's values under a reserved key, so every
//! store holds it without a schema of its own, and listing an owner's sessions
//! returns it. Requests that only read a session never write it.

use std::net::IpAddr;

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use latchkey_core::{Record, SessionData};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The reserved key the description is kept under.
pub(crate) const DEVICE_KEY: &str = "latchkey.device";

/// How much of the client's address a session records.
///
/// # Examples
///
/// ```
/// use latchkey::{ClientIp, DeviceMetadata};
///
/// let metadata = DeviceMetadata::default().client_ip(ClientIp::Truncated);
/// # drop(metadata);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientIp {
    /// None of it (the default).
    #[default]
    Off,
    /// The network only: an IPv4 address to its /24, an IPv6 address to its
    /// /48, the rest zeroed. Enough to tell "home" from "abroad", not to
    /// single out a household.
    Truncated,
    /// The whole address.
    Full,
}

/// What the middleware records about the device of each new session; see
/// [`SessionMiddlewareBuilder::device_metadata`](crate::SessionMiddlewareBuilder::device_metadata).
///
/// The default is privacy-minded: the first 256 bytes of the user agent and no
/// address.
///
/// # Examples
///
/// ```
/// use actix_web::http::header::HeaderName;
/// use latchkey::{ClientIp, DeviceMetadata};
///
/// // Behind a proxy that appends the client's address to X-Forwarded-For:
/// let metadata = DeviceMetadata::default()
///     .client_ip(ClientIp::Truncated)
///     .client_ip_header(HeaderName::from_static("x-forwarded-for"));
/// # drop(metadata);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceMetadata {
    user_agent_bytes: usize,
    client_ip: ClientIp,
    client_ip_header: Option<HeaderName>,
}

/// How much of the user agent the default keeps.
const DEFAULT_USER_AGENT_BYTES: usize = 256;

impl Default for DeviceMetadata {
    fn default() -> Self {
        Self {
            user_agent_bytes: DEFAULT_USER_AGENT_BYTES,
            client_ip: ClientIp::Off,
            client_ip_header: None,
        }
    }
}

impl DeviceMetadata {
    /// Records nothing: sessions carry no device description.
    ///
    /// # Examples
    ///
    /// ```
    /// let nothing = latchkey::DeviceMetadata::off();
    /// # drop(nothing);
    /// ```
    pub fn off() -> Self {
        Self {
            user_agent_bytes: 0,
            client_ip: ClientIp::Off,
            client_ip_header: None,
        }
    }

    /// Keeps at most `bytes` bytes of the `User-Agent` header (cut at a
    /// character boundary, control characters dropped); `0` keeps none.
    ///
    /// # Examples
    ///
    /// ```
    /// let short = latchkey::DeviceMetadata::default().user_agent_bytes(64);
    /// # drop(short);
    /// ```
    #[must_use]
    pub fn user_agent_bytes(mut self, bytes: usize) -> Self {
        self.user_agent_bytes = bytes;
        self
    }

    /// How much of the client's address to keep.
    ///
    /// # Examples
    ///
    /// ```
    /// use latchkey::{ClientIp, DeviceMetadata};
    ///
    /// let full = DeviceMetadata::default().client_ip(ClientIp::Full);
    /// # drop(full);
    /// ```
    #[must_use]
    pub fn client_ip(mut self, client_ip: ClientIp) -> Self {
        self.client_ip = client_ip;
        self
    }

    /// Takes the client's address from `header`, set by a proxy the
    /// application trusts, instead of the connection's peer. Of a list
    /// (`X-Forwarded-For: client, proxy1`, or several lines of the header)
    /// the last entry is taken: the one the trusted proxy appended, which a
    /// client cannot forge. A header that
    /// is absent or holds no address records none.
    ///
    /// Only name a header that the proxy in front of every request sets or
    /// overwrites: otherwise a client writes its own.
    ///
    /// # Examples
    ///
    /// ```
    /// use actix_web::http::header::HeaderName;
    /// use latchkey::{ClientIp, DeviceMetadata};
    ///
    /// let proxied = DeviceMetadata::default()
    ///     .client_ip(ClientIp::Full)
    ///     .client_ip_header(HeaderName::from_static("x-real-ip"));
    /// # drop(proxied);
    /// ```
    #[must_use]
    pub fn client_ip_header(mut self, header: HeaderName) -> Self {
        self.client_ip_header = Some(header);
        self
    }

    /// What `req` tells about its device, kept as it came (header values
    /// are reference-counted): most requests never store a session, so the
    /// description is only made when one does.
    pub(crate) fn clues(&self, req: &HttpRequest) -> Clues {
        let user_agent = (self.user_agent_bytes > 0)
            .then(|| req.headers().get(header::USER_AGENT).cloned())
            .flatten();
        let (address_header, peer) = match (self.client_ip, &self.client_ip_header) {
            (ClientIp::Off, _) => (None, None),
            // A proxy may add its own header line after the client's.
            (_, Some(name)) => (req.headers().get_all(name).last().cloned(), None),
            (_, None) => (None, req.peer_addr().map(|peer| peer.ip())),
        };
        Clues {
            user_agent,
            address_header,
            peer,
        }
    }

    /// The description `clues` make, `None` when nothing is to be recorded.
    pub(crate) fn describe(&self, clues: &Clues) -> Option<Device> {
        let user_agent = clues
            .user_agent
            .as_ref()
            .map(|value| {
                truncate(
                    &String::from_utf8_lossy(value.as_bytes()),
                    self.user_agent_bytes,
                )
            })
            .filter(|agent| !agent.is_empty());
        let address = match &self.client_ip_header {
            None => clues.peer,
            Some(_) => clues.address_header.as_ref().and_then(|value| {
                let last = value.to_str().ok()?.rsplit(',').next()?.trim();
                parse_address(last)
            }),
        };
        let ip = match self.client_ip {
            ClientIp::Off => None,
            ClientIp::Truncated => address.map(truncate_address),
            ClientIp::Full => address,
        }
        .map(|address| address.to_string());
        (user_agent.is_some() || ip.is_some()).then_some(Device { user_agent, ip })
    }
}

/// What a request told about its device, before [`DeviceMetadata::describe`]
/// makes a description of it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Clues {
    user_agent: Option<HeaderValue>,
    address_header: Option<HeaderValue>,
    peer: Option<IpAddr>,
}

/// An address as proxies write it: bare, or with a port (`1.2.3.4:80`,
/// `[::1]:80`).
fn parse_address(text: &str) -> Option<IpAddr> {
    text.parse()
        .ok()
        .or_else(|| text.parse::<std::net::SocketAddr>().ok().map(|s| s.ip()))
}

fn truncate_address(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::from([s[0], s[1], s[2], 0, 0, 0, 0, 0])
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary, without control
/// characters.
fn truncate(text: &str, max: usize) -> String {
    let mut kept = String::with_capacity(text.len().min(max));
    for c in text.chars().filter(|c| !c.is_control()) {
        if kept.len() + c.len_utf8() > max {
            break;
        }
        kept.push(c);
    }
    kept
}

/// The device a session was created on (or last logged in from), as
/// [`DeviceMetadata`] allowed it to be recorded.
///
/// # Examples
///
/// ```
/// use latchkey::Device;
/// use latchkey::store::SessionStore;
///
/// async fn devices<S: SessionStore>(store: &S, owner: &str) -> Result<Vec<String>, latchkey::StoreError> {
///     Ok(store
///         .list_by_owner(owner)
///         .await?
///         .iter()
///         .map(|(_, record)| match Device::of(record) {
///             Some(device) => device.user_agent.unwrap_or_default(),
///             None => "unknown device".into(),
///         })
///         .collect())
/// }
/// # let _ = devices::<latchkey::AnyStore>;
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Device {
    /// The `User-Agent` header, truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client's address, truncated or whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

impl Device {
    /// The device a stored session recorded; `None` for one that recorded
    /// nothing (created with [`DeviceMetadata::off`], or before this existed).
    pub fn of(record: &Record) -> Option<Device> {
        Self::in_data(&record.data)
    }

    pub(crate) fn in_data(data: &SessionData) -> Option<Device> {
        data.get(DEVICE_KEY)
            .and_then(|value| Device::deserialize(value).ok())
    }

    /// The device as the session's values keep it.
    pub(crate) fn to_value(&self) -> Option<Value> {
        serde_json::to_value(self).ok()
    }
}

/// The longest client address as text (an IPv6 address with an embedded
/// IPv4 one).
const MAX_ADDRESS_BYTES: usize = 45;

/// The bytes the device entry adds to the serialized values, which the limits
/// on the application's values leave out: zero unless the entry is a device
/// description within `metadata`'s bounds, so nothing else can hide there.
pub(crate) fn entry_bytes(data: &SessionData, metadata: &DeviceMetadata) -> usize {
    let Some(value) = data.get(DEVICE_KEY) else {
        return 0;
    };
    let within_bounds = Device::deserialize(value).is_ok_and(|device| {
        // Nothing but the fields of a description: no padding beside them.
        device.to_value().as_ref() == Some(value)
            && device.user_agent.is_none_or(|agent| {
                agent.len() <= metadata.user_agent_bytes.max(DEFAULT_USER_AGENT_BYTES)
            })
            && device.ip.is_none_or(|ip| ip.len() <= MAX_ADDRESS_BYTES)
    });
    if !within_bounds {
        return 0;
    }
    // `"latchkey.device":` plus the value, plus a separating comma.
    DEVICE_KEY.len() + 3 + serde_json::to_vec(value).map_or(0, |v| v.len()) + 1
}

/// Whether `data`'s device entry is left out of the limits.
pub(crate) fn exempt(data: &SessionData, metadata: &DeviceMetadata) -> bool {
    entry_bytes(data, metadata) > 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn describe_request(metadata: &DeviceMetadata, req: &HttpRequest) -> Option<Device> {
        metadata.describe(&metadata.clues(req))
    }

    #[test]
    fn the_default_keeps_a_truncated_agent_and_no_address() {
        let req = TestRequest::default()
            .insert_header((header::USER_AGENT, "a\t".repeat(300)))
            .peer_addr("192.0.2.7:4000".parse().unwrap())
            .to_http_request();
        let device = describe_request(&DeviceMetadata::default(), &req).unwrap();
        assert_eq!(device.user_agent.as_deref(), Some(&*"a".repeat(256)));
        assert_eq!(device.ip, None);
        assert_eq!(describe_request(&DeviceMetadata::off(), &req), None);
    }

    #[test]
    fn agents_are_cut_at_a_character_boundary_without_control_characters() {
        assert_eq!(truncate("ab\u{1b}[31mcd", 100), "ab[31mcd");
        assert_eq!(truncate("ééé", 5), "éé");
        assert_eq!(truncate("x", 0), "");
    }

    #[test]
    fn addresses_are_truncated_to_their_network() {
        let req = |peer: &str| {
            TestRequest::default()
                .peer_addr(peer.parse().unwrap())
                .to_http_request()
        };
        let truncated = DeviceMetadata::off().client_ip(ClientIp::Truncated);
        let ip = |metadata: &DeviceMetadata, peer: &str| {
            describe_request(metadata, &req(peer)).and_then(|d| d.ip)
        };
        assert_eq!(ip(&truncated, "192.0.2.77:1").as_deref(), Some("192.0.2.0"));
        assert_eq!(
            ip(&truncated, "[2001:db8:1:2:3:4:5:6]:1").as_deref(),
            Some("2001:db8:1::")
        );
        let full = DeviceMetadata::off().client_ip(ClientIp::Full);
        assert_eq!(ip(&full, "192.0.2.77:1").as_deref(), Some("192.0.2.77"));
    }

    #[test]
    fn a_trusted_header_gives_its_last_entry_and_nothing_else() {
        let metadata = DeviceMetadata::off()
            .client_ip(ClientIp::Full)
            .client_ip_header(HeaderName::from_static("x-forwarded-for"));
        let ip = |value: Option<&str>| {
            let mut req = TestRequest::default().peer_addr("10.0.0.1:1".parse().unwrap());
            if let Some(value) = value {
                req = req.insert_header(("x-forwarded-for", value));
            }
            describe_request(&metadata, &req.to_http_request()).and_then(|d| d.ip)
        };
        assert_eq!(
            ip(Some("6.6.6.6, 198.51.100.4")).as_deref(),
            Some("198.51.100.4")
        );
        assert_eq!(
            ip(Some("[2001:db8::1]:443")).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(ip(Some("198.51.100.4:80")).as_deref(), Some("198.51.100.4"));
        assert_eq!(ip(Some("not an address")), None);
        let two_lines = TestRequest::default()
            .append_header(("x-forwarded-for", "6.6.6.6"))
            .append_header(("x-forwarded-for", "198.51.100.5"))
            .to_http_request();
        assert_eq!(
            describe_request(&metadata, &two_lines)
                .and_then(|d| d.ip)
                .as_deref(),
            Some("198.51.100.5"),
            "the proxy's own line, after the client's"
        );
        assert_eq!(ip(None), None, "never the peer when a header is configured");
    }

    #[test]
    fn the_entry_size_matches_its_serialized_bytes() {
        let mut data = SessionData::new();
        data.insert("app".into(), "value".into());
        let without = serde_json::to_vec(&data).unwrap().len();
        let device = Device {
            user_agent: Some("agent \"quoted\"".into()),
            ip: Some("192.0.2.0".into()),
        };
        data.insert(DEVICE_KEY.into(), device.to_value().unwrap());
        let with = serde_json::to_vec(&data).unwrap().len();
        assert_eq!(
            with - without,
            entry_bytes(&data, &DeviceMetadata::default())
        );
        data.insert(DEVICE_KEY.into(), "x".repeat(1000).into());
        assert_eq!(
            entry_bytes(&data, &DeviceMetadata::default()),
            0,
            "not a device: counted"
        );
        let long = Device {
            user_agent: Some("a".repeat(257)),
            ip: None,
        };
        data.insert(DEVICE_KEY.into(), long.to_value().unwrap());
        assert_eq!(
            entry_bytes(&data, &DeviceMetadata::default()),
            0,
            "past the bound: counted"
        );
        let padded = serde_json::json!({"user_agent": "x", "pad": "y".repeat(500)});
        data.insert(DEVICE_KEY.into(), padded);
        assert_eq!(
            entry_bytes(&data, &DeviceMetadata::default()),
            0,
            "padded: counted"
        );
    }
}
