//! Credentials and capabilities.
//!
//! SCIM API tokens are 256 random bits with a recognisable prefix, stored only as SHA-256
//! hashes and compared in constant time. A `ScimCtx` proves that a request carried a live
//! token of the tenant it names and that SCIM is enabled there; only this module can make
//! one, so a service method that takes a `ScimCtx` cannot be reached unauthenticated.

use crate::ids::{TenantId, TokenId};
use crate::store::{Role, Store};
use crate::tenant::Tenant;
use crate::{Error, Result};
use hashlink::LruCache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Every token starts with this, so leaked tokens are easy to recognise (secret scanners).
pub const TOKEN_PREFIX: &str = "cairn_";

/// A secret token as shown once to an administrator. `Debug` never prints it.
#[derive(Clone)]
pub struct ScimToken(String);

impl ScimToken {
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ScimToken(format!("{TOKEN_PREFIX}{hex}"))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(&self.0)
    }
    /// The fragment shown after the first display: prefix and last four characters.
    pub fn hint(&self) -> String {
        let s = &self.0;
        format!("{}…{}", &s[..TOKEN_PREFIX.len() + 4], &s[s.len() - 4..])
    }
}

impl fmt::Debug for ScimToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ScimToken(<redacted>)")
    }
}

/// SHA-256 of a token. A token has 256 bits of entropy, so a fast hash is enough: nobody
/// can brute-force it, and a slow hash per request is what makes other servers crawl.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
    pub fn from_bytes(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(TokenHash)
    }
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(..)")
    }
}

/// Extracts the token from an `Authorization` header value. Accepts `Bearer <t>` (scheme
/// in any case), a bare `<t>` and `Bearer Bearer <t>`: Okta's "HTTP Header" mode sends
/// any of these depending on what the administrator typed (Okta Help Center, "Add SCIM
/// provisioning to app integrations").
pub fn token_from_header(value: &str) -> Option<&str> {
    let mut rest = value.trim();
    loop {
        match rest.get(..6) {
            Some(p) if p.eq_ignore_ascii_case("bearer") && rest[6..].starts_with([' ', '\t']) => {
                rest = rest[6..].trim_start();
            }
            _ => break,
        }
    }
    let rest = rest.trim();
    (!rest.is_empty() && !rest.contains([' ', '\t'])).then_some(rest)
}

/// Proof that a SCIM request is authenticated for `tenant`.
#[derive(Debug, Clone)]
pub struct ScimCtx {
    tenant: Tenant,
    token_id: TokenId,
}

impl ScimCtx {
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant.id
    }
    pub fn token_id(&self) -> &TokenId {
        &self.token_id
    }
}

/// Proof that the caller operates the deployment (runs the `cairn` command line with
/// access to its data). Operators may act on any tenant.
#[derive(Debug, Clone)]
pub struct OperatorCtx(());

impl OperatorCtx {
    /// Only the binary's command-line entry point calls this.
    pub fn local_operator() -> Self {
        OperatorCtx(())
    }
}

/// A dashboard session's proof of identity and role within one tenant.
#[derive(Debug, Clone)]
pub struct DashboardCtx {
    pub(crate) tenant_id: TenantId,
    pub(crate) user_id: crate::ids::DashboardUserId,
    pub(crate) email: String,
    pub(crate) role: Role,
}

impl DashboardCtx {
    pub fn tenant_id(&self) -> &TenantId {
        &self.tenant_id
    }
    pub fn email(&self) -> &str {
        &self.email
    }
    pub fn user_id(&self) -> &crate::ids::DashboardUserId {
        &self.user_id
    }
    pub fn role(&self) -> Role {
        self.role
    }
}

struct CacheEntry {
    fetched: Instant,
    state: crate::store::ScimAuthState,
}

/// The cached views of tenants, known and unknown apart: requests naming made-up tenant
/// ids fill only the small `unknown` map, so they can neither evict a real tenant's
/// entry nor grow memory. Both are LRU-bounded.
struct AuthCache {
    known: LruCache<TenantId, CacheEntry>,
    /// When the tenant was last found not to exist.
    unknown: LruCache<TenantId, Instant>,
}

/// Tenants whose tokens are cached at most (least recently used ones are dropped, and
/// read again when next used).
pub const AUTH_CACHE_TENANTS: usize = 10_000;
/// Tenant ids remembered as unknown at most: enough to absorb one client retrying a
/// wrong URL, small enough that a flood of made-up ids costs little memory.
pub const AUTH_CACHE_UNKNOWN: usize = 1_024;

/// Authenticates SCIM requests. Token hashes and settings are cached for a short time
/// (`ttl`), so a request costs one SHA-256 and no database round trip; a token regenerated
/// on another instance stops working within `ttl`, one regenerated here at once. A new
/// token (or SCIM just enabled) elsewhere is honoured at once: a refusal based on a cached
/// view older than 250 ms is checked again against the database.
pub struct ScimAuthenticator {
    store: Arc<dyn Store>,
    ttl: Duration,
    cache: Mutex<AuthCache>,
    touched: Mutex<HashMap<TokenId, Instant>>,
}

/// A refused token is checked once more against the database when the cached view it
/// was refused on is at least this old (see [`ScimAuthenticator::authenticate`]).
const MIN_RECHECK_AGE: Duration = Duration::from_millis(250);

/// How often the last-used time of a token is written back.
const TOUCH_INTERVAL: Duration = Duration::from_secs(30);

impl ScimAuthenticator {
    pub fn new(store: Arc<dyn Store>, ttl: Duration) -> Self {
        ScimAuthenticator {
            store,
            ttl,
            cache: Mutex::new(AuthCache {
                known: LruCache::new(AUTH_CACHE_TENANTS),
                unknown: LruCache::new(AUTH_CACHE_UNKNOWN),
            }),
            touched: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an existing tenant's state is cached (tests and diagnostics).
    pub fn is_cached(&self, tenant: &TenantId) -> bool {
        self.cache
            .lock()
            .expect("auth cache")
            .known
            .contains_key(tenant)
    }

    /// Entries cached, known and unknown tenants together (tests and diagnostics).
    pub fn cached_len(&self) -> usize {
        let c = self.cache.lock().expect("auth cache");
        c.known.len() + c.unknown.len()
    }

    pub fn invalidate(&self, tenant: &TenantId) {
        let mut c = self.cache.lock().expect("auth cache");
        c.known.remove(tenant);
        c.unknown.remove(tenant);
    }

    /// Checks `authorization` against the live tokens of the tenant named in the URL.
    /// Returns the capability and whether the token's last-used time is due for a write.
    pub async fn authenticate(
        &self,
        tenant_in_url: &str,
        authorization: Option<&str>,
    ) -> Result<(ScimCtx, bool)> {
        let presented = authorization
            .and_then(token_from_header)
            .ok_or(Error::Unauthorized)?;
        let tenant_id = TenantId::parse(tenant_in_url).ok_or(Error::Unauthorized)?;
        let hash = TokenHash::of(presented);
        let (mut state, mut cached_for) = self.state(&tenant_id, false).await?;
        let mut accepted = Self::accept(state.as_ref(), &hash);
        // Refused on a cached view that is not brand new: the token may have been
        // generated (or SCIM enabled) on another instance a moment ago, so look once more
        // in the database. The age floor bounds what bad tokens can cost the database.
        if accepted.is_none() && cached_for.is_some_and(|age| age >= MIN_RECHECK_AGE) {
            (state, cached_for) = self.state(&tenant_id, true).await?;
            debug_assert!(cached_for.is_none());
            accepted = Self::accept(state.as_ref(), &hash);
        }
        let (tenant, token_id) = accepted.ok_or(Error::Unauthorized)?;
        let due = {
            let mut touched = self.touched.lock().expect("touch map");
            let now = Instant::now();
            match touched.get(&token_id) {
                Some(t) if now.duration_since(*t) < TOUCH_INTERVAL => false,
                _ => {
                    touched.insert(token_id.clone(), now);
                    true
                }
            }
        };
        Ok((ScimCtx { tenant, token_id }, due))
    }

    /// The tenant and token id when `hash` is a live token of a tenant with SCIM enabled.
    fn accept(
        state: Option<&crate::store::ScimAuthState>,
        hash: &TokenHash,
    ) -> Option<(crate::tenant::Tenant, TokenId)> {
        let state = state?;
        if !state.tenant.scim_enabled {
            return None;
        }
        // Compare against every live token without stopping early.
        let mut found: Option<TokenId> = None;
        for (id, stored) in &state.tokens {
            if stored.ct_eq(hash) {
                found = Some(id.clone());
            }
        }
        found.map(|id| (state.tenant.clone(), id))
    }

    /// The tenant's settings and live token hashes, and how old the cached copy served
    /// is (`None`: just read from the database). `fresh` bypasses the cache.
    async fn state(
        &self,
        tenant: &TenantId,
        fresh: bool,
    ) -> Result<(Option<crate::store::ScimAuthState>, Option<Duration>)> {
        if !fresh {
            let mut cache = self.cache.lock().expect("auth cache");
            if let Some(e) = cache.known.get(tenant) {
                let age = e.fetched.elapsed();
                if age < self.ttl {
                    return Ok((Some(e.state.clone()), Some(age)));
                }
            } else if let Some(at) = cache.unknown.get(tenant) {
                let age = at.elapsed();
                if age < self.ttl {
                    return Ok((None, Some(age)));
                }
            }
        }
        let state = self.store.scim_auth_state(tenant).await?;
        let mut cache = self.cache.lock().expect("auth cache");
        let now = Instant::now();
        match &state {
            Some(s) => {
                cache.unknown.remove(tenant);
                cache.known.insert(
                    tenant.clone(),
                    CacheEntry {
                        fetched: now,
                        state: s.clone(),
                    },
                );
            }
            None => {
                // A tenant that was deleted is no longer known.
                cache.known.remove(tenant);
                cache.unknown.insert(tenant.clone(), now);
            }
        }
        Ok((state, None))
    }
}

/// An Argon2id password hash in PHC string form.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    pub fn from_phc(s: String) -> Self {
        PasswordHash(s)
    }
    pub fn as_phc(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(..)")
    }
}

pub const MIN_PASSWORD_LEN: usize = 12;

/// Hashes a password with Argon2id. CPU-heavy: call it off the async runtime.
pub fn hash_password(password: &str) -> Result<PasswordHash> {
    use argon2::password_hash::{rand_core::OsRng, PasswordHasher, SaltString};
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(Error::Invalid {
            field: "password",
            reason: format!("must be at least {MIN_PASSWORD_LEN} characters"),
        });
    }
    if password.len() > 1024 {
        return Err(Error::Invalid {
            field: "password",
            reason: "must be at most 1024 bytes".into(),
        });
    }
    let salt = SaltString::generate(&mut OsRng);
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| PasswordHash(h.to_string()))
        .map_err(|e| Error::Internal(format!("argon2: {e}")))
}

/// Verifies a password against its Argon2id hash. CPU-heavy: call it off the runtime.
pub fn verify_password(password: &str, hash: &PasswordHash) -> bool {
    use argon2::password_hash::{PasswordHash as Phc, PasswordVerifier};
    match Phc::new(&hash.0) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_forms() {
        assert_eq!(token_from_header("Bearer abc"), Some("abc"));
        assert_eq!(token_from_header("bearer   abc "), Some("abc"));
        assert_eq!(token_from_header("BEARER Bearer abc"), Some("abc"));
        assert_eq!(token_from_header("abc"), Some("abc"));
        assert_eq!(token_from_header("Bearer"), Some("Bearer"));
        assert_eq!(token_from_header("Bearer "), Some("Bearer"));
        assert_eq!(token_from_header(""), None);
        assert_eq!(token_from_header("Basic a b"), None);
    }

    #[test]
    fn tokens_are_random_prefixed_and_redacted() {
        let a = ScimToken::generate();
        let b = ScimToken::generate();
        assert_ne!(a.expose(), b.expose());
        assert!(a.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(a.expose().len(), TOKEN_PREFIX.len() + 64);
        assert!(!format!("{a:?}").contains(a.expose()));
        assert!(a.hash().ct_eq(&TokenHash::of(a.expose())));
        assert!(!a.hash().ct_eq(&b.hash()));
        assert!(a.hint().starts_with("cairn_"));
    }

    #[test]
    fn passwords_round_trip() {
        let h = hash_password("correct horse battery").unwrap();
        assert!(h.as_phc().starts_with("$argon2id$"));
        assert!(verify_password("correct horse battery", &h));
        assert!(!verify_password("wrong horse battery", &h));
        assert!(hash_password("short").is_err());
    }
}
