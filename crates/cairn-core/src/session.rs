//! Dashboard sign-in and sessions: Argon2id verification off the async runtime, sign-in
//! throttling per account and per client address, and server-side sessions with idle and
//! absolute expiry and a per-session CSRF token.
//!
//! The browser holds a random session id; the store holds only its SHA-256, so a copy of
//! the database cannot be replayed as cookies, and several instances share sessions through
//! the shared database. This is the only module that constructs a `DashboardCtx`.

use crate::auth::{verify_password, DashboardCtx, PasswordHash};
use crate::ids::{fold_case, DashboardUserId, TenantId};
use crate::people::{LinkPurpose, LinkSecret};
use crate::service::Services;
use crate::store::DashboardUser;
use crate::{Error, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
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
/// Failed sign-ins for one email from one client address within the window before that
/// pair is locked for the rest of it. Keyed on the pair so that someone who knows an
/// administrator's email cannot lock the administrator out from elsewhere.
pub const MAX_FAILURES_PER_ACCOUNT_ADDRESS: u32 = 5;
/// Failed sign-ins from one client address within the window. Higher than per account:
/// an office behind one NAT address must not lock itself out because of one typist.
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// Failed sign-ins for one email from all addresses within the window after which the
/// account is slowed, not locked: one attempt per [`ACCOUNT_SLOW_SPACING`].
pub const ACCOUNT_SLOW_AFTER: u32 = 10;
/// The spacing of attempts for a slowed account (see [`ACCOUNT_SLOW_AFTER`]).
pub const ACCOUNT_SLOW_SPACING: Duration = Duration::seconds(5);
/// Retry-After of a sign-in refused because the password checks are all busy.
pub const BUSY_RETRY_AFTER: Duration = Duration::seconds(1);

/// One limit a sign-in attempt is charged against: at most `max` failures under `key`
/// within [`THROTTLE_WINDOW`]; then refused until the oldest of them ages out, or, with a
/// `spacing`, allowed once per `spacing` (slowed, not locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleRule {
    pub key: [u8; 32],
    pub max: u32,
    pub spacing: Option<Duration>,
}

impl ThrottleRule {
    /// How long to wait before the next attempt, given the failures under `key` within the
    /// window (`count`, the `oldest` and the `newest`); `None`: the attempt may go ahead.
    /// The stores call this inside their atomic charge, so the rule is written once.
    pub fn verdict(
        &self,
        count: u32,
        oldest: Option<OffsetDateTime>,
        newest: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Option<Duration> {
        if count < self.max {
            return None;
        }
        let until = match self.spacing {
            None => oldest.unwrap_or(now) + THROTTLE_WINDOW,
            Some(gap) => newest.unwrap_or(now) + gap,
        };
        (until > now).then(|| (until - now).max(Duration::seconds(1)))
    }
}

/// The global bound on password verifications. Argon2id with the default parameters
/// (RFC 9106 §4's second recommended option, as the argon2 crate ships) takes 19 MiB and
/// tens of milliseconds of a core per check, on a blocking thread shared with SQLite reads
/// and vault I/O: unbounded, a flood of sign-ins takes the process's memory and starves
/// every other request. At most `concurrency` checks run at once and `queue` more wait;
/// beyond that a sign-in is refused at once (`SignInError::Busy`).
#[derive(Debug)]
pub struct SignInGate {
    permits: Arc<tokio::sync::Semaphore>,
    admitted: AtomicUsize,
    capacity: usize,
    verifications: AtomicU64,
    shed: AtomicU64,
}

impl Default for SignInGate {
    /// One check per core, and a queue of eight.
    fn default() -> Self {
        SignInGate::default_with_queue(8)
    }
}

impl SignInGate {
    /// One check per core, and `queue` waiting.
    pub fn default_with_queue(queue: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        SignInGate::new(cores, queue)
    }

    pub fn new(concurrency: usize, queue: usize) -> Self {
        let concurrency = concurrency.max(1);
        SignInGate {
            permits: Arc::new(tokio::sync::Semaphore::new(concurrency)),
            admitted: AtomicUsize::new(0),
            capacity: concurrency.saturating_add(queue),
            verifications: AtomicU64::new(0),
            shed: AtomicU64::new(0),
        }
    }

    /// Password verifications started since the process started.
    pub fn verifications(&self) -> u64 {
        self.verifications.load(Ordering::Relaxed)
    }

    /// Sign-ins refused because every check and queue place was taken.
    pub fn shed(&self) -> u64 {
        self.shed.load(Ordering::Relaxed)
    }

    /// A place among the checks running or queued, or `None` when all are taken.
    fn admit(&self) -> Option<GateTicket<'_>> {
        if self.admitted.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
            self.shed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(GateTicket(self))
    }

    /// Waits for a running place, then verifies on a blocking thread. The permit moves
    /// into the blocking task, so a client that goes away does not free the place while
    /// its check still runs.
    async fn verify(
        &self,
        _ticket: &GateTicket<'_>,
        password: String,
        hash: PasswordHash,
    ) -> Result<bool> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("sign-in gate: {e}")))?;
        self.verifications.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            verify_password(&password, &hash)
        })
        .await
        .map_err(|e| Error::Internal(format!("password check: {e}")))
    }
}

impl SignInGate {
    /// Hashes a new password (a one-time link's page) under the same bound as the checks:
    /// the same Argon2id cost, so the same flood to guard against.
    pub(crate) async fn hash(&self, password: String) -> Result<PasswordHash> {
        let ticket = self.admit().ok_or(Error::Unavailable(
            "every password check is busy; try again in a moment".into(),
        ))?;
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::Internal(format!("sign-in gate: {e}")))?;
        let r = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            crate::auth::hash_password(&password)
        })
        .await
        .map_err(|e| Error::Internal(format!("password hash: {e}")))?;
        drop(ticket);
        r
    }
}

/// A place taken in the [`SignInGate`], given back on drop.
struct GateTicket<'a>(&'a SignInGate);

impl Drop for GateTicket<'_> {
    fn drop(&mut self) {
        self.0.admitted.fetch_sub(1, Ordering::AcqRel);
    }
}

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
    /// Every password check and queue place is taken (see [`SignInGate`]); try again
    /// after this long.
    Busy {
        retry_after: Duration,
    },
    /// The password was right, but the dashboard user's tenant signs in through single
    /// sign-on only (`crate::sso_password`); the tenant, for its sign-in link.
    PasswordSignInOff {
        tenant: TenantId,
    },
    /// The pending second step (a [`LinkPurpose::SecondFactor`] or `Enrolment` link)
    /// is unknown, used or expired: start again with the password.
    Expired,
    Failed(Error),
}

/// What a correct password leads to.
#[derive(Debug)]
pub enum SignInOutcome {
    /// Signed in.
    Session(SessionSecret, DashboardSession),
    /// The password was right; a code from the authenticator app (or a recovery code)
    /// comes next, or, with `enrol`, setting one up (the tenant requires it). The browser
    /// holds `challenge` until then.
    SecondFactor { challenge: LinkSecret, enrol: bool },
}

/// Failed second-factor codes for one user within [`THROTTLE_WINDOW`] before that step
/// is locked for the rest of it. Only someone who knows the password gets this far, so a
/// lock (rather than a slow-down) locks out no one else; signing in with the password
/// again does not reset it.
pub const MAX_SECOND_FACTOR_FAILURES: u32 = 5;

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
    ) -> Result<SignInOutcome, SignInError> {
        // Shed before anything else: a refused sign-in costs no database work.
        let ticket = self.sign_in_gate.admit().ok_or(SignInError::Busy {
            retry_after: BUSY_RETRY_AFTER,
        })?;
        let now = self.clock.now();
        let folded = fold_case(email.trim());
        let pair_key = throttle_key("account-address", &format!("{folded}\n{client}"));
        let account_key = throttle_key("account", &folded);
        let address_key = throttle_key("address", client);
        let since = now - THROTTLE_WINDOW;
        let rules = [
            ThrottleRule {
                key: pair_key,
                max: MAX_FAILURES_PER_ACCOUNT_ADDRESS,
                spacing: None,
            },
            ThrottleRule {
                key: address_key,
                max: MAX_FAILURES_PER_ADDRESS,
                spacing: None,
            },
            ThrottleRule {
                key: account_key,
                max: ACCOUNT_SLOW_AFTER,
                spacing: Some(ACCOUNT_SLOW_SPACING),
            },
        ];
        // The attempt is charged as a failure before the password is checked, in one
        // atomic step with the check of the limits: parallel attempts cannot all pass the
        // limits before any failure is recorded. A success takes its charge back below.
        if let Some(retry_after) = self.store.charge_login_attempt(&rules, now, since).await? {
            return Err(SignInError::Throttled { retry_after });
        }

        let checked = self.check_password(&ticket, email, password).await;
        drop(ticket);
        let user = match checked {
            Ok(Some(u)) => u,
            Ok(None) => return Err(SignInError::InvalidCredentials),
            Err(e) => {
                // Not a wrong password: the charge is given back (best effort: the
                // original error is the one to report; a charge left behind expires
                // with the window).
                let keys = [pair_key, address_key, account_key];
                let _ = self.store.credit_login_attempt(&keys, now).await;
                return Err(e.into());
            }
        };
        self.store.credit_login_attempt(&[address_key], now).await?;
        self.store.clear_login_failures(&pair_key).await?;
        self.store.clear_login_failures(&account_key).await?;
        // Checked after the password, so that the answer tells nothing to someone who
        // does not know it.
        if !self.password_sign_in_allowed(&user, client).await? {
            return Err(SignInError::PasswordSignInOff {
                tenant: user.tenant_id.clone(),
            });
        }
        // Housekeeping rides on sign-ins too (and on the serve loop's timer).
        self.store
            .delete_expired_sessions(now, now - SESSION_IDLE, since)
            .await?;

        // --- second factor (issue 22) ---
        let required = self.store.second_factor_required(&user.tenant_id).await?;
        if user.second_factor || required {
            let purpose = if user.second_factor {
                LinkPurpose::SecondFactor
            } else {
                LinkPurpose::Enrolment
            };
            let challenge = LinkSecret::generate();
            self.store
                .put_link(&crate::people::LinkRecord {
                    hash: challenge.hash(),
                    tenant_id: user.tenant_id.clone(),
                    user_id: user.id.clone(),
                    purpose,
                    created_at: now,
                    expires_at: now + purpose.lifetime(),
                })
                .await?;
            return Ok(SignInOutcome::SecondFactor {
                challenge,
                enrol: !user.second_factor,
            });
        }
        // --- end second factor ---

        let (secret, session) = self.start_dashboard_session(&user, previous).await?;
        Ok(SignInOutcome::Session(secret, session))
    }

    /// The pending second step behind `challenge` (of `purpose`), if live.
    async fn challenge_user(
        &self,
        challenge: &LinkSecret,
        purpose: LinkPurpose,
    ) -> Result<Option<DashboardUser>, SignInError> {
        Ok(self
            .live_link(challenge)
            .await?
            .filter(|(l, u)| l.purpose == purpose && !u.disabled)
            .map(|(_, u)| u))
    }

    /// Charges one second-step attempt against the client's address and the user's
    /// second-factor limit (see [`MAX_SECOND_FACTOR_FAILURES`]).
    async fn charge_second_step(
        &self,
        user: &DashboardUser,
        client: &str,
    ) -> Result<[[u8; 32]; 2], SignInError> {
        let now = self.clock.now();
        let keys = [
            throttle_key("address", client),
            throttle_key("second-factor", user.id.as_str()),
        ];
        let rules = [
            ThrottleRule {
                key: keys[0],
                max: MAX_FAILURES_PER_ADDRESS,
                spacing: None,
            },
            ThrottleRule {
                key: keys[1],
                max: MAX_SECOND_FACTOR_FAILURES,
                spacing: None,
            },
        ];
        if let Some(retry_after) = self
            .store
            .charge_login_attempt(&rules, now, now - THROTTLE_WINDOW)
            .await?
        {
            return Err(SignInError::Throttled { retry_after });
        }
        Ok(keys)
    }

    /// Ends a successful second step: the charge is taken back, the challenge used up
    /// (once: a parallel use of the same challenge loses), and the session starts.
    async fn finish_second_step(
        &self,
        user: &DashboardUser,
        challenge: &LinkSecret,
        keys: [[u8; 32]; 2],
        previous: Option<&SessionSecret>,
    ) -> Result<(SessionSecret, DashboardSession), SignInError> {
        let now = self.clock.now();
        self.store.credit_login_attempt(&keys, now).await?;
        self.store.clear_login_failures(&keys[1]).await?;
        if !self.store.consume_link(&challenge.hash(), now).await? {
            return Err(SignInError::Expired);
        }
        Ok(self.start_dashboard_session(user, previous).await?)
    }

    /// The second step of a password sign-in: a code from the authenticator app, or a
    /// recovery code. Throttled like the password step.
    pub async fn sign_in_second_factor(
        &self,
        challenge: &LinkSecret,
        code: &str,
        client: &str,
        previous: Option<&SessionSecret>,
    ) -> Result<(SessionSecret, DashboardSession), SignInError> {
        let user = self
            .challenge_user(challenge, LinkPurpose::SecondFactor)
            .await?
            .ok_or(SignInError::Expired)?;
        let keys = self.charge_second_step(&user, client).await?;
        if !self.check_second_factor(&user, code).await? {
            return Err(SignInError::InvalidCredentials);
        }
        self.finish_second_step(&user, challenge, keys, previous)
            .await
    }

    /// The email and pending TOTP secret of a sign-in that must enrol first.
    pub async fn sign_in_enrolment(
        &self,
        challenge: &LinkSecret,
    ) -> Result<(String, crate::totp::TotpSecret), SignInError> {
        let user = self
            .challenge_user(challenge, LinkPurpose::Enrolment)
            .await?
            .ok_or(SignInError::Expired)?;
        let secret = self.pending_totp(&user).await?;
        Ok((user.email, secret))
    }

    /// Confirms the enrolment of a sign-in that had to enrol, and signs in: the session
    /// and the recovery codes (shown once).
    pub async fn finish_sign_in_enrolment(
        &self,
        challenge: &LinkSecret,
        code: &str,
        client: &str,
        previous: Option<&SessionSecret>,
    ) -> Result<(SessionSecret, DashboardSession, Vec<String>), SignInError> {
        let user = self
            .challenge_user(challenge, LinkPurpose::Enrolment)
            .await?
            .ok_or(SignInError::Expired)?;
        let keys = self.charge_second_step(&user, client).await?;
        let Some(codes) = self.confirm_totp(&user, code).await? else {
            return Err(SignInError::InvalidCredentials);
        };
        let (secret, session) = self
            .finish_second_step(&user, challenge, keys, previous)
            .await?;
        Ok((secret, session, codes))
    }

    /// Starts a dashboard session for `user` after a sign-in that did not use a password
    /// (single sign-on, `crate::sso`): the same record and expiry as [`Self::sign_in`],
    /// with a new session id (the presented one, if any, is ended: no fixation).
    pub(crate) async fn start_dashboard_session(
        &self,
        user: &DashboardUser,
        previous: Option<&SessionSecret>,
    ) -> Result<(SessionSecret, DashboardSession)> {
        if user.disabled {
            return Err(Error::Forbidden);
        }
        let now = self.clock.now();
        if let Some(prev) = previous {
            self.store.delete_session(&prev.hash()).await?;
        }
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
        Ok((secret, session_of(user, &record)))
    }

    /// The dashboard user when `password` is theirs (and the user is not disabled).
    /// Unknown emails are checked against a dummy hash, so both take as long.
    async fn check_password(
        &self,
        ticket: &GateTicket<'_>,
        email: &str,
        password: String,
    ) -> Result<Option<DashboardUser>> {
        let user = self.store.find_dashboard_user(email).await?;
        if password.len() > 1024 {
            return Ok(None);
        }
        // A dashboard user created by single sign-on has no password (an empty hash):
        // it is checked against the dummy hash like an unknown email, and never matches.
        let no_password = user
            .as_ref()
            .is_some_and(|u| u.password_hash.as_phc().is_empty());
        let hash = user
            .as_ref()
            .filter(|_| !no_password)
            .map(|u| u.password_hash.clone())
            .unwrap_or_else(|| dummy_hash().clone());
        let ok = self.sign_in_gate.verify(ticket, password, hash).await?;
        Ok(user.filter(|u| ok && !no_password && !u.disabled))
    }

    /// Deletes expired sessions and sign-in failures older than the throttle window; the
    /// serve loop calls it on a timer, so the failures table stays bounded even when
    /// nobody signs in successfully.
    pub async fn expire_sign_in_state(&self) -> Result<()> {
        let now = self.clock.now();
        self.store
            .delete_expired_sessions(now, now - SESSION_IDLE, now - THROTTLE_WINDOW)
            .await
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
        // A dashboard user single sign-on created for a group-mapped account holds the
        // role its account's groups grant now: removed from the group over SCIM (or the
        // account suspended or deleted), the session ends on its next request, on any
        // instance (both are read from the store).
        let mut user = user;
        if let Some(now_role) = self.sso_role_now(&user).await? {
            match now_role {
                Some(role) => user.role = role,
                None => {
                    self.store.delete_session(&hash).await?;
                    self.store
                        .record_audit(crate::audit::AuditDraft {
                            tenant_id: user.tenant_id.clone(),
                            actor: crate::audit::Actor::System,
                            action: crate::audit::Action::SsoSessionEnded,
                            target_type: "dashboard_user",
                            target_id: Some(user.id.to_string()),
                            target_name: Some(user.email.clone()),
                            changes: serde_json::json!({
                                "reason": "the account no longer holds a group mapped to a dashboard role"
                            }),
                            meta: Default::default(),
                            at: now,
                        })
                        .await?;
                    return Ok(None);
                }
            }
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
    fn the_gate_admits_running_and_queued_checks_then_sheds() {
        let gate = SignInGate::new(2, 3);
        let tickets: Vec<_> = (0..5).map(|_| gate.admit().expect("a place")).collect();
        assert!(gate.admit().is_none());
        assert_eq!(gate.shed(), 1);
        drop(tickets);
        assert!(gate.admit().is_some(), "places are given back");
    }

    #[test]
    fn verdicts_lock_until_the_window_passes_or_space_attempts() {
        let now = OffsetDateTime::UNIX_EPOCH + Duration::days(1);
        let lock = ThrottleRule {
            key: [0; 32],
            max: 5,
            spacing: None,
        };
        assert_eq!(lock.verdict(4, Some(now), Some(now), now), None);
        let oldest = now - Duration::minutes(5);
        assert_eq!(
            lock.verdict(5, Some(oldest), Some(now), now),
            Some(Duration::minutes(10))
        );
        let slow = ThrottleRule {
            spacing: Some(Duration::seconds(5)),
            ..lock
        };
        let newest = now - Duration::seconds(2);
        assert_eq!(
            slow.verdict(9, Some(oldest), Some(newest), now),
            Some(Duration::seconds(3))
        );
        let newest = now - Duration::seconds(5);
        assert_eq!(slow.verdict(9, Some(oldest), Some(newest), now), None);
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
