//! OpenID Connect sign-in per tenant (issue 17 item 3): the authorization code flow with
//! PKCE (S256), on the `openidconnect` crate.
//!
//! - `GET /sso/{tenant}/login` (in `sso.rs`) comes here when the tenant's OpenID
//!   Connect settings are enabled: a random state and nonce and a PKCE verifier are
//!   stored server-side ([`cairn_core::oidc`], single use, ten minutes), then a redirect
//!   to the provider's authorization endpoint;
//! - `GET /sso/{tenant}/oidc/callback`: the state is used up *before* the code is
//!   redeemed; the `iss` response parameter, when present, must be the tenant's issuer
//!   (RFC 9207 §2.4); the code is redeemed with the verifier; the ID token's signature
//!   (RS256/ES256 only, keys only from the issuer's `jwks_uri`), `iss` (exactly the
//!   configured issuer), `aud` (our client id, no untrusted extra audience), `exp` and
//!   `iat` (with [`MAX_CLOCK_SKEW`]) and `nonce` are checked by the crate; then
//!   `cairn_core::oidc` matches the claims inside the tenant as SAML does.
//!
//! Discovery, keys and tokens are fetched by [`crate::idp_fetch`]: no redirects followed
//! (the crate's docs warn of SSRF), a time limit, a size cap, https only and no
//! loopback, private or link-local address (checked on the resolved addresses), unless
//! the operator started `cairn serve --sso-allow-insecure-idp` (tests). Each issuer's metadata and
//! keys are cached; an ID token signed by a key id not in the cache refetches the keys,
//! at most once per [`Oidc::jwks_refresh_interval`] per issuer (a provider rotating its
//! keys, OIDC Core §10.1.1).

use crate::idp_fetch::{FetchError, IdpHttp};
use crate::sso::{meta_of, not_found, refused_page, signed_in_response, unavailable};
use crate::AppState;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use cairn_core::ids::TenantId;
use cairn_core::oidc::{OidcConfig, VerifiedIdToken};
use cairn_core::sso::MAX_CLOCK_SKEW;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, HttpRequest,
    HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    SignatureVerificationError, TokenResponse,
};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The largest discovery document, key set or token response read.
pub const MAX_IDP_RESPONSE: usize = 256 * 1024;
/// How long discovery is trusted before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sso/{tenant}/oidc/callback", get(callback))
        .layer(axum::middleware::from_fn(
            crate::dashboard::security_headers,
        ))
}

/// Our redirect URI for a tenant (registered at the provider).
pub fn callback_url(public_url: &str, tenant: &TenantId) -> String {
    format!("{public_url}/sso/{tenant}/oidc/callback")
}

struct Cached {
    metadata: CoreProviderMetadata,
    fetched: Instant,
    jwks_fetched: Instant,
}

/// The HTTP client for providers and the per-issuer cache of discovery and keys.
pub struct Oidc {
    http: IdpHttp,
    /// The least time between two key refetches of one issuer on an unknown key id.
    pub jwks_refresh_interval: Duration,
    cache: Mutex<HashMap<String, Cached>>,
}

impl Default for Oidc {
    fn default() -> Self {
        Oidc::new(false, Duration::from_secs(60))
    }
}

impl Oidc {
    pub fn new(allow_insecure: bool, jwks_refresh_interval: Duration) -> Self {
        Oidc {
            http: IdpHttp::new(allow_insecure),
            jwks_refresh_interval,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The client for identity providers, also used for SAML metadata URLs.
    pub fn http(&self) -> &IdpHttp {
        &self.http
    }

    async fn send(&self, req: HttpRequest) -> Result<HttpResponse, FetchError> {
        // The same rules as for SAML metadata URLs: https, no internal addresses (checked
        // on the resolved addresses the connection uses), no redirects, size and time.
        let uri = req.uri().to_string();
        let (parts, body) = req.into_parts();
        let builder = self
            .http
            .request(parts.method, &uri)
            .headers(parts.headers)
            .body(body);
        let (status, headers, out) = self.http.send(builder, MAX_IDP_RESPONSE).await?;
        let mut resp = openidconnect::http::Response::builder()
            .status(status.as_u16())
            .body(out)
            .map_err(|e| FetchError::Http(e.to_string()))?;
        for (k, v) in headers.iter() {
            if let (Ok(k), Ok(v)) = (
                openidconnect::http::HeaderName::from_bytes(k.as_str().as_bytes()),
                openidconnect::http::HeaderValue::from_bytes(v.as_bytes()),
            ) {
                resp.headers_mut().append(k, v);
            }
        }
        Ok(resp)
    }

    /// The issuer's discovery document with its keys, from the cache or fetched.
    async fn metadata(&self, issuer: &str) -> Result<CoreProviderMetadata, String> {
        if let Some(c) = self.cache.lock().expect("oidc cache").get(issuer) {
            if c.fetched.elapsed() < METADATA_TTL {
                return Ok(c.metadata.clone());
            }
        }
        let url = IssuerUrl::new(issuer.to_owned()).map_err(|e| e.to_string())?;
        // Checks that the document's `issuer` is exactly this one (OIDC Discovery §4.3).
        let metadata = CoreProviderMetadata::discover_async(url, self)
            .await
            .map_err(|e| format!("discovery failed: {e}"))?;
        let now = Instant::now();
        self.cache.lock().expect("oidc cache").insert(
            issuer.to_owned(),
            Cached {
                metadata: metadata.clone(),
                fetched: now,
                jwks_fetched: now,
            },
        );
        Ok(metadata)
    }

    /// Refetches the issuer's keys unless that was done less than the interval ago;
    /// `None` when rate-limited or failed.
    async fn refresh_jwks(&self, issuer: &str) -> Option<CoreProviderMetadata> {
        let metadata = {
            let cache = self.cache.lock().expect("oidc cache");
            let c = cache.get(issuer)?;
            if c.jwks_fetched.elapsed() < self.jwks_refresh_interval {
                return None;
            }
            c.metadata.clone()
        };
        let jwks = CoreJsonWebKeySet::fetch_async(metadata.jwks_uri(), self)
            .await
            .map_err(|e| tracing::warn!(issuer, error = %e, "refetching the keys failed"))
            .ok()?;
        let metadata = metadata.set_jwks(jwks);
        let mut cache = self.cache.lock().expect("oidc cache");
        if let Some(c) = cache.get_mut(issuer) {
            c.metadata = metadata.clone();
            c.jwks_fetched = Instant::now();
        }
        Some(metadata)
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for Oidc {
    type Error = FetchError;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, FetchError>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

/// The tenant's enabled OpenID Connect settings, if any.
pub async fn enabled_config(
    state: &AppState,
    tenant: &TenantId,
) -> cairn_core::Result<Option<OidcConfig>> {
    Ok(state
        .services
        .oidc_config(tenant)
        .await?
        .filter(|c| c.enabled))
}

fn client_for(
    public_url: &str,
    tenant: &TenantId,
    config: &OidcConfig,
    metadata: &CoreProviderMetadata,
) -> Result<
    CoreClient<
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointNotSet,
        openidconnect::EndpointSet,
        openidconnect::EndpointNotSet,
    >,
    String,
> {
    let token_url = metadata
        .token_endpoint()
        .cloned()
        .ok_or("the provider has no token endpoint")?;
    let redirect = RedirectUrl::new(callback_url(public_url, tenant)).map_err(|e| e.to_string())?;
    Ok(CoreClient::new(
        ClientId::new(config.client_id.clone()),
        metadata.issuer().clone(),
        metadata.jwks().clone(),
    )
    .set_client_secret(ClientSecret::new(config.client_secret.expose().to_owned()))
    .set_auth_uri(metadata.authorization_endpoint().clone())
    .set_token_uri(token_url)
    .set_redirect_uri(redirect))
}

/// `GET /sso/{tenant}/login` for a tenant on OpenID Connect.
pub async fn login(state: &AppState, tenant: &TenantId, config: &OidcConfig) -> Response {
    let metadata = match state.oidc.metadata(&config.issuer).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "OpenID provider discovery failed");
            return unavailable(cairn_core::Error::Internal("OpenID discovery".into()));
        }
    };
    let client = match client_for(&state.services.public_url, tenant, config, &metadata) {
        Ok(c) => c,
        Err(e) => return unavailable(cairn_core::Error::Internal(e)),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let req = match state
        .services
        .begin_oidc_login(tenant, verifier.secret().clone())
        .await
    {
        Ok(r) => r,
        Err(e) => return unavailable(e),
    };
    let (s, n) = (req.state.clone(), req.nonce.clone());
    let (url, _, _) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            move || CsrfToken::new(s),
            move || Nonce::new(n),
        )
        .add_scope(Scope::new("email".into()))
        .add_scope(Scope::new("profile".into()))
        .set_pkce_challenge(challenge)
        .url();
    Redirect::to(url.as_str()).into_response()
}

#[derive(serde::Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    iss: Option<String>,
    error: Option<String>,
}

pub async fn callback(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let services = &state.services;
    let Some(tenant) = TenantId::parse(&tenant) else {
        return not_found();
    };
    let config = match enabled_config(&state, &tenant).await {
        Ok(Some(c)) => c,
        Ok(None) => return not_found(),
        Err(e) => return unavailable(e),
    };
    let meta = meta_of(&headers);
    let refuse = |reason: &'static str, subject: Option<String>| {
        let services = services.clone();
        let tenant = tenant.clone();
        let meta = meta.clone();
        async move {
            tracing::info!(%tenant, reason, "single sign-on refused");
            match services
                .oidc_refused(&tenant, reason, subject.as_deref(), meta)
                .await
            {
                Ok(()) => refused_page(),
                Err(e) => unavailable(e),
            }
        }
    };
    // State first: an unknown, used or expired state never reaches the token endpoint.
    let Some(st) = q
        .state
        .as_deref()
        .filter(|s| !s.is_empty() && s.len() <= 128)
    else {
        return refuse("no state", None).await;
    };
    let request = match services.take_oidc_request(&tenant, st).await {
        Ok(Some(r)) => r,
        Ok(None) => return refuse("unknown, used or expired state", None).await,
        Err(e) => return unavailable(e),
    };
    if q.error.is_some() {
        return refuse("the identity provider returned an error", None).await;
    }
    if q.iss.as_deref().is_some_and(|i| i != config.issuer) {
        return refuse("authorization response from another issuer", None).await;
    }
    let Some(code) = q.code.filter(|c| !c.is_empty()) else {
        return refuse("no authorization code", None).await;
    };
    let metadata = match state.oidc.metadata(&config.issuer).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "OpenID provider discovery failed");
            return refuse("the identity provider's discovery failed", None).await;
        }
    };
    let client = match client_for(&services.public_url, &tenant, &config, &metadata) {
        Ok(c) => c,
        Err(e) => return unavailable(cairn_core::Error::Internal(e)),
    };
    let token = match client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(PkceCodeVerifier::new(request.pkce_verifier.clone()))
        .request_async(&*state.oidc)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            tracing::info!(%tenant, error = %e, "code redemption failed");
            return refuse("the authorization code could not be redeemed", None).await;
        }
    };
    let Some(id_token) = token.id_token() else {
        return refuse("no ID token", None).await;
    };
    let nonce = Nonce::new(request.nonce.clone());
    let check = |jwks: &CoreJsonWebKeySet| {
        let skew = chrono::Duration::seconds(MAX_CLOCK_SKEW.whole_seconds());
        let verifier = openidconnect::IdTokenVerifier::new_confidential_client(
            ClientId::new(config.client_id.clone()),
            ClientSecret::new(config.client_secret.expose().to_owned()),
            IssuerUrl::new(config.issuer.clone()).expect("checked by discovery"),
            jwks.clone(),
        )
        .set_allowed_algs([
            CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        ])
        // `exp` with the skew (the crate compares strictly with no skew of its own).
        .set_time_fn(move || chrono::Utc::now() - skew)
        .set_issue_time_verifier_fn(move |iat| {
            if iat > chrono::Utc::now() + skew {
                Err("issued in the future".into())
            } else {
                Ok(())
            }
        });
        id_token.claims(&verifier, &nonce).cloned()
    };
    let mut claims = check(metadata.jwks());
    if matches!(
        claims,
        Err(ClaimsVerificationError::SignatureVerification(
            SignatureVerificationError::NoMatchingKey
        ))
    ) {
        if let Some(fresh) = state.oidc.refresh_jwks(&config.issuer).await {
            claims = check(fresh.jwks());
        }
    }
    let claims = match claims {
        Ok(c) => c,
        Err(e) => {
            let reason = match e {
                ClaimsVerificationError::Expired(_) => "ID token expired",
                ClaimsVerificationError::InvalidAudience(_) => "ID token for another audience",
                ClaimsVerificationError::InvalidIssuer(_) => "ID token from another issuer",
                ClaimsVerificationError::InvalidNonce(_) => "ID token nonce mismatch",
                ClaimsVerificationError::SignatureVerification(
                    SignatureVerificationError::NoMatchingKey,
                ) => "ID token signed by an unknown key",
                ClaimsVerificationError::SignatureVerification(_) => "ID token signature invalid",
                _ => "ID token invalid",
            };
            return refuse(reason, None).await;
        }
    };
    // OIDC Core §3.1.3.7 steps 4 and 5, which the crate leaves to its callers: with
    // several audiences an `azp` is required, and when present it must be our client id.
    let azp_ok = match claims.authorized_party() {
        Some(azp) => azp.as_str() == config.client_id,
        None => claims.audiences().len() <= 1,
    };
    if !azp_ok {
        return refuse("ID token for another authorized party", None).await;
    }
    let verified = VerifiedIdToken {
        issuer: claims.issuer().to_string(),
        subject: claims.subject().to_string(),
        preferred_username: claims.preferred_username().map(|p| p.to_string()),
        email: claims.email().map(|e| e.to_string()),
        email_verified: claims.email_verified().unwrap_or(false),
    };
    let previous = crate::sso::previous_secret(&headers, &services.public_url);
    match services
        .finish_oidc_login(&tenant, &verified, previous.as_ref(), meta.clone())
        .await
    {
        Ok(Ok(signed_in)) => signed_in_response(&services.public_url, signed_in),
        Ok(Err(_)) => refused_page(),
        Err(e) => unavailable(e),
    }
}
