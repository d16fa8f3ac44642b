//! Dashboard sign-in and sessions: Argon2id verification off the async runtime, sign-in
//! throttling per account and per client address, and server-side sessions with idle and
//! absolute expiry and a per-session CSRF token.
//!
//! The browser holds a random session id; the store holds only its SHA-256, so a copy of
//! the database cannot be replayed as cookies, and several instances share sessions through
//! the shared database. This is the only module that constructs a `DashboardCtx`.

use crate::auth::{verify_password, DashboardCtx, PasswordHash};
use crate::ids::{fold_case, DashboardUserId, TenantId};
use crate::service::Services;
use crate::store::DashboardUser;
use crate::{Error, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::OnceLock;
use time::{Duration, OffsetDateTime};

/// A session ends after this long without a request.
pub const SESSION_IDLE: Duration = Duration::minutes(30);
/// A session ends this long after sign-in, however active it is.
pub const SESSION_ABSOLUTE: Duration = Duration::hours(12);
/// The last-seen time is written at most this often (a write per page view is wasteful;
/// the idle timeout does not need second precision).
const TOUCH_EVERY: Duration = Duration::seconds(60);

/// Failed sign-ins are counted over this window.
pub const THROTTLE_WINDOW: Duration = Duration::minutes(15);
/// Failed sign-ins for one email within the window before it is locked for the rest of it.
pub const MAX_FAILURES_PER_ACCOUNT: u32 = 5;
/// Failed sign-ins from one client address within the window. Higher than per account:
/// an office behind one NAT address must not lock itself out because of one typist.
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;

/// The random session id the browser holds. `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(String);

impl SessionSecret {
    pub fn generate() -> Self {
        SessionSecret(random_hex())
    }
    /// Accepts only the form Cairn issues (64 lower-case hex digits).
    pub fn parse(s: &str) -> Option<Self> {
        (s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| SessionSecret(s.to_owned()))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn hash(&self) -> SessionHash {
        SessionHash(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret(<redacted>)")
    }
}

/// 256 random bits as hex: session ids and CSRF tokens.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of a session id: the key under which the store keeps the session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SessionHash([u8; 32]);

impl SessionHash {
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(SessionHash)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for SessionHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionHash(..)")
    }
}

/// A session as stored.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub id_hash: SessionHash,
    pub tenant_id: TenantId,
    pub user_id: DashboardUserId,
    /// Sent in every form of this session and compared on every POST.
    pub csrf_token: String,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// The absolute end of the session.
    pub expires_at: OffsetDateTime,
}

/// What a signed-in request knows: who (the capability) and the session's CSRF token.
#[derive(Debug, Clone)]
pub struct DashboardSession {
    pub ctx: DashboardCtx,
    pub csrf_token: String,
}

/// Why a sign-in did not succeed.
#[derive(Debug, Clone, PartialEq)]
pub enum SignInError {
    /// Unknown email or wrong password (deliberately indistinguishable).
    InvalidCredentials,
    /// Too many recent failures for this account or address; try again after this long.
    Throttled {
        retry_after: Duration,
    },
    Failed(Error),
}

impl From<Error> for SignInError {
    fn from(e: Error) -> Self {
        SignInError::Failed(e)
    }
}

/// Throttle keys are stored hashed, so the table of failures holds neither emails nor
/// addresses.
fn throttle_key(kind: &str, value: &str) -> [u8; 32] {
    Sha256::digest(format!("{kind}:{value}").as_bytes()).into()
}

/// A real Argon2id hash to verify against when the email is unknown, so that the answer
/// takes as long as for a known email (no account enumeration by timing).
fn dummy_hash() -> &'static PasswordHash {
    static H: OnceLock<PasswordHash> = OnceLock::new();
    H.get_or_init(|| {
        crate::auth::hash_password("not a password of anyone")
            .unwrap_or_else(|_| PasswordHash::from_phc(String::new()))
    })
}

impl Services {
    /// Checks email and password, then starts a new session (a fresh id every time: the
    /// id is rotated at sign-in, and `previous`, the session the browser held, is ended).
    /// `client` is the client's address, for throttling.
    pub async fn sign_in(
        &self,
        email: &str,
        password: String,
        client: &str,
        previous: Option<&SessionSecret>,
    ) -> Result<(SessionSecret, DashboardSession), SignInError> {
        let now = self.clock.now();
        let account_key = throttle_key("account", &fold_case(email.trim()));
        let address_key = throttle_key("address", client);
        let since = now - THROTTLE_WINDOW;
        for (key, max) in [
            (&account_key, MAX_FAILURES_PER_ACCOUNT),
            (&address_key, MAX_FAILURES_PER_ADDRESS),
        ] {
            let (count, oldest) = self.store.login_failures_since(key, since).await?;
            if count >= max {
                let until = oldest.unwrap_or(now) + THROTTLE_WINDOW;
                return Err(SignInError::Throttled {
                    retry_after: (until - now).max(Duration::seconds(1)),
                });
            }
        }

        let user = self.store.find_dashboard_user(email).await?;
        let hash = user
            .as_ref()
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().clone());
        let ok = if password.len() > 1024 {
            false
        } else {
            // Argon2id takes tens of milliseconds of CPU: keep it off the async workers.
            tokio::task::spawn_blocking(move || verify_password(&password, &hash))
                .await
                .map_err(|e| Error::Internal(format!("password check: {e}")))?
        };
        let user = match (ok, user) {
            (true, Some(u)) => u,
            _ => {
                self.store
                    .record_login_failure(&[account_key, address_key], now)
                    .await?;
                return Err(SignInError::InvalidCredentials);
            }
        };
        self.store.clear_login_failures(&account_key).await?;
        if let Some(prev) = previous {
            self.store.delete_session(&prev.hash()).await?;
        }
        // Housekeeping rides on sign-ins: expired sessions and old failures go.
        self.store
            .delete_expired_sessions(now, now - SESSION_IDLE, since)
            .await?;

        let secret = SessionSecret::generate();
        let record = SessionRecord {
            id_hash: secret.hash(),
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            csrf_token: random_hex(),
            created_at: now,
            last_seen_at: now,
            expires_at: now + SESSION_ABSOLUTE,
        };
        self.store.create_session(&record).await?;
        Ok((secret, session_of(&user, &record)))
    }

    /// The live session behind `secret`, if any. Expired sessions are removed; the
    /// dashboard user's current role is read on every request, so a changed role applies
    /// at once.
    pub async fn dashboard_session(
        &self,
        secret: &SessionSecret,
    ) -> Result<Option<DashboardSession>> {
        let now = self.clock.now();
        let hash = secret.hash();
        let Some((record, user)) = self.store.get_session(&hash).await? else {
            return Ok(None);
        };
        if now >= record.expires_at || now - record.last_seen_at >= SESSION_IDLE {
            self.store.delete_session(&hash).await?;
            return Ok(None);
        }
        if user.tenant_id != record.tenant_id {
            return Ok(None);
        }
        if now - record.last_seen_at >= TOUCH_EVERY {
            self.store.touch_session(&hash, now).await?;
        }
        Ok(Some(session_of(&user, &record)))
    }

    /// Ends the session behind `secret`.
    pub async fn sign_out(&self, secret: &SessionSecret) -> Result<()> {
        self.store.delete_session(&secret.hash()).await
    }
}

fn session_of(user: &DashboardUser, record: &SessionRecord) -> DashboardSession {
    DashboardSession {
        ctx: DashboardCtx {
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            email: user.email.clone(),
            role: user.role,
        },
        csrf_token: record.csrf_token.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_parseable_and_redacted() {
        let a = SessionSecret::generate();
        let b = SessionSecret::generate();
        assert_ne!(a, b);
        assert_eq!(SessionSecret::parse(a.expose()), Some(a.clone()));
        assert_eq!(SessionSecret::parse(&a.expose().to_uppercase()), None);
        assert_eq!(SessionSecret::parse("abc"), None);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_ne!(a.hash().as_bytes(), b.hash().as_bytes());
        assert_ne!(&a.hash().as_bytes()[..], a.expose().as_bytes());
    }

    #[test]
    fn throttle_keys_do_not_reveal_their_input() {
        let k = throttle_key("account", "alice@example.com");
        assert_ne!(k, throttle_key("address", "alice@example.com"));
        assert!(!k
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
            .contains("alice"));
    }
}
